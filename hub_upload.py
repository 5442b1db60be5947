"""Check a Forge model folder, then publish it to the Hugging Face Hub.

    python hub_upload.py FOLDER --repo-id USER/NAME [--private] [--revision REV] [--commit-message MSG] [--dry-run]

The same command is installed as ``forge-hub-upload``. The pre-flight checks and the upload live in
:mod:`recipes.publishing.upload`; this file is the thin command the README shows.
"""

from __future__ import annotations

import sys

from recipes.publishing.upload import *  # noqa: F401,F403  (preflight, upload, ... for scripts that load this file)
from recipes.publishing.upload import main

if __name__ == "__main__":
    sys.exit(main())
