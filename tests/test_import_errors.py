"""A broken Forge module fails loudly: no ``except ImportError`` may hide it (issue 15, part 3).

Each case runs in a fresh interpreter in which one Forge module raises the ImportError a broken file raises
(``cannot import name ... from 'transformers'``) when imported; the entry point that used to swallow it must
now raise it. A package that is absent altogether (a Python without Forge) stays optional: that case is covered by
tests/test_hub_upload.py's "Python without Forge" load check.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Installs a finder that makes `BROKEN` raise on import, as a file with a bad import line would.
_BREAK = textwrap.dedent(
    """
    import importlib.abc, sys
    BROKEN = {broken!r}

    class Broken(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == BROKEN:
                raise ImportError("cannot import name 'Missing' from 'transformers'", name="transformers")
            return None

    sys.meta_path.insert(0, Broken())
    """
)

CASES = {
    # `import modeling` used to skip the pipelines silently when pipeline_forge failed to import.
    "pipelines": ("modeling.pipeline_forge", "import modeling"),
    # The recipes used to train, then skip the model card with a warning when the card writer failed to import.
    "card writer": ("recipes.publishing.cards", "import recipes.core.trainer_utils"),
    # The tokenizer's AutoTokenizer registration used to be skipped when `modeling` failed to import.
    "tokenizer registration": ("modeling.configuration_forge", "import tokenization"),
    # The Hub-folder export used to skip the package's code files when it failed to import.
    "export": ("modeling.modeling_forge", "from recipes.publishing.export import _code_dirs; _code_dirs(None, 'modeling')"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_broken_forge_module_fails_loudly(case):
    broken, statement = CASES[case]
    script = _BREAK.format(broken=broken) + statement + "\nprint('IMPORTED WITHOUT ERROR')\n"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert "IMPORTED WITHOUT ERROR" not in result.stdout, f"{broken} was broken, yet `{statement}` went on"
    assert result.returncode != 0
    assert "cannot import name 'Missing'" in result.stderr, result.stderr[-2000:]
