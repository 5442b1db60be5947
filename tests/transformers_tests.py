"""transformers' own common model tests, loaded from the source distribution of the installed transformers.

transformers tests every model it ships with the mixins of ``tests/test_modeling_common.py``. That file is not part of
the installed package, only of the sdist on PyPI; this module fetches it with pip (once, into a cache folder outside
the repository: ``$FORGE_TEST_CACHE`` or ``~/.cache/forge-tests``) and imports it, so Forge is tested by the very
code that tests BART, at the installed version. Nothing of it is copied into this repository.

The sdist ships the top-level ``tests/*.py`` files only. ``test_modeling_common.py`` imports two mixins from
sub-folders it does not ship (``tests/exporters/test_export.py``, ``tests/generation/test_utils.py``): they are
replaced by empty classes, so the torch.export and generate() batteries do not run (Forge's own generation tests
in tests/test_modeling.py cover cached vs uncached, beams, and the encoder-decoder cache).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
import types
from pathlib import Path

import transformers

PACKAGE = "transformers_common_tests"  # the name the sdist's tests/ folder is imported under
_NEEDED = ("test_modeling_common.py",)


def cache_folder() -> Path:
    return Path(os.environ.get("FORGE_TEST_CACHE", Path.home() / ".cache" / "forge-tests"))


def fetch_tests(version: str = transformers.__version__) -> Path:
    """The sdist's ``tests/`` folder for ``version``, downloaded and unpacked once (a file lock guards xdist)."""
    from filelock import FileLock  # a dependency of transformers (huggingface_hub)

    root = cache_folder() / f"transformers-{version}"
    tests = root / "tests"
    if all((tests / name).is_file() for name in _NEEDED):
        return tests
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root) + ".lock"):
        if all((tests / name).is_file() for name in _NEEDED):
            return tests
        download = root / "sdist"
        # --no-build-isolation: pip still reads the sdist's metadata, but with the installed setuptools instead of
        # fetching a build environment (about 15 s instead of a minute).
        command = [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
            "--no-build-isolation", f"transformers=={version}", "--dest", str(download),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:  # no setuptools to build the metadata with: let pip fetch a build environment
            command.remove("--no-build-isolation")
            result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        archives = sorted(download.glob(f"transformers-{version}.tar.gz"))
        if result.returncode != 0 or not archives:
            raise RuntimeError(
                f"could not fetch the transformers {version} sdist from PyPI ({' '.join(command)}): "
                f"{(result.stderr or result.stdout).strip()[-500:]}"
            )
        prefix = f"transformers-{version}/tests/"
        with tarfile.open(archives[0]) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(prefix) and m.name.count("/") == 2]
            for member in members:
                member.name = member.name[len(prefix) :]
            tests.mkdir(exist_ok=True)
            archive.extractall(tests, members=members, filter="data")
        missing = [name for name in _NEEDED if not (tests / name).is_file()]
        if missing:
            raise RuntimeError(f"the transformers {version} sdist has no tests/{missing[0]}")
    return tests


def import_common_tests() -> types.ModuleType:
    """``test_modeling_common`` of the installed transformers version, imported as ``transformers_common_tests``."""
    name = f"{PACKAGE}.test_modeling_common"
    if name in sys.modules:
        return sys.modules[name]
    tests = fetch_tests()
    package = types.ModuleType(PACKAGE)
    package.__path__ = [str(tests)]
    sys.modules[PACKAGE] = package
    # The two sub-folder mixins the sdist does not ship (see the module docstring).
    for sub, module, mixin in (("exporters", "test_export", "ExportTesterMixin"),
                               ("generation", "test_utils", "GenerationTesterMixin")):  # fmt: skip
        folder = types.ModuleType(f"{PACKAGE}.{sub}")
        folder.__path__ = []
        stub = types.ModuleType(f"{PACKAGE}.{sub}.{module}")
        setattr(stub, mixin, type(mixin, (), {"__doc__": "Not in the sdist: an empty stand-in."}))
        sys.modules[folder.__name__] = folder
        sys.modules[stub.__name__] = stub
    spec = importlib.util.spec_from_file_location(name, tests / "test_modeling_common.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
