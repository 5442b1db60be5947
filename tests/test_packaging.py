"""What ``pip install .`` gives a user: one namespace, ``forge.*``, and nothing else in site-packages (issue 15).

The repository keeps its folders top-level (``modeling/``, ``recipes/``, ...); setup.cfg maps them under ``forge``
so that a user's own ``modeling.py`` cannot shadow Forge and a Python without Forge can hide it (the upload's load
check). These tests build the wheel from the repository's files, install it into a fresh virtual environment (with
the system's packages, so torch and transformers come from there; offline, no dependencies fetched) and use it the
way an installed user does, from a folder that holds its own ``modeling.py``.
"""

from __future__ import annotations

import ast
import configparser
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("modeling", "tokenization", "recipes", "model_cards")  # the repository's folders, forge.* installed
DIST_INFO = "forge_transformer-"

pytestmark = pytest.mark.xdist_group("subprocess-heavy")


def _absolute_checkout_imports(path: Path) -> list[str]:
    """``import modeling`` / ``from recipes.core import ...`` lines: they name the checkout, not the install."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        found += [f"{path.relative_to(REPO_ROOT)}:{node.lineno}: {name}" for name in names
                  if name.split(".")[0] in PACKAGES]
    return found


def test_package_code_imports_itself_relatively():
    """Code inside the packages reaches its own package relatively and its siblings through recipes/core/layout.py:
    an absolute ``from recipes.x import y`` works in a checkout and breaks the installed wheel (forge.recipes.x)."""
    offenders = [line for package in PACKAGES for path in sorted((REPO_ROOT / package).rglob("*.py"))
                 for line in _absolute_checkout_imports(path)]
    assert not offenders, "use a relative import, or recipes/core/layout.py for a sibling package:\n" + "\n".join(
        offenders)


def _build_backend_is_offline() -> bool:
    """The installed setuptools can build a wheel without fetching anything (bdist_wheel ships with 70.1 and up)."""
    if importlib.util.find_spec("setuptools") is None:
        return False
    import setuptools
    from packaging.version import Version

    return Version(setuptools.__version__) >= Version("70.1") or importlib.util.find_spec("wheel") is not None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the repository's packaging inputs (the checkout itself stays untouched)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, src / name)
    for package in PACKAGES:
        shutil.copytree(REPO_ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path_factory.mktemp("dist")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(dist), str(src)]
    if _build_backend_is_offline():
        command.insert(4, "--no-build-isolation")
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    (built,) = dist.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment (system packages visible) with the wheel installed, as ``pip install .`` does."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    # The system's pip, run by the new environment's Python, installs into that environment; --ignore-installed
    # because the checkout's own editable install (CI's `pip install -e .`) would otherwise satisfy it, leaving
    # the new environment without the wheel's files.
    result = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                             "--ignore-installed", str(wheel)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return env_dir


@pytest.fixture
def user_folder(tmp_path) -> Path:
    """A user's project folder with modules of the generic names Forge's folders have (BERT's repository has a
    modeling.py): run from here, they come first on sys.path."""
    for name in PACKAGES:
        (tmp_path / f"{name}.py").write_text("USER_MODULE = True\n", encoding="utf-8")
    return tmp_path


def _run(installed: Path, args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}  # no checkout on the path
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_wheel_holds_one_namespace_and_every_package_file(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"forge", next(t for t in top if t.startswith(DIST_INFO))}, sorted(top)
    assert "forge/__init__.py" not in names  # a namespace package: the repository has no forge/ folder
    # Every source file of the packages is in the wheel (setup.cfg lists the packages one by one; a new sub-package
    # left out of that list would be missing here), with the data files the code reads.
    expected = {f"forge/{path.relative_to(REPO_ROOT).as_posix()}" for package in PACKAGES
                for path in (REPO_ROOT / package).rglob("*.py") if "__pycache__" not in path.parts}
    assert expected <= set(names), sorted(expected - set(names))
    for data in ("forge/model_cards/template.md", "forge/recipes/sample_data/sentiment/train.jsonl",
                 "forge/recipes/accelerate_configs/fsdp.yaml", "forge/recipes/metrics/forge_rouge.py"):
        assert data in names
    dist_info = next(t for t in top if t.startswith(DIST_INFO))
    entry_points = configparser.ConfigParser()
    entry_points.read_string(zipfile.ZipFile(wheel).read(f"{dist_info}/entry_points.txt").decode())
    assert dict(entry_points["console_scripts"]) == {"forge-hub-upload": "forge.recipes.publishing.upload:main"}


IMPORT_EVERYTHING = textwrap.dedent(
    """
    import importlib, importlib.metadata, json, pkgutil, sys
    import modeling, recipes  # the user's own modules, from the working folder

    PACKAGES = sys.argv[1:]

    modules = []
    for name in ("forge.modeling", "forge.tokenization", "forge.recipes", "forge.model_cards"):
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(package.__path__, name + "."):
            if not info.name.endswith("__main__"):
                modules.append(importlib.import_module(info.name).__file__)
    (upload,) = importlib.metadata.entry_points(group="console_scripts", name="forge-hub-upload")
    from forge.recipes.core.registry import task_specs

    print(json.dumps({
        "user_modules": [modeling.USER_MODULE, recipes.USER_MODULE],
        "forge_files": modules,
        "loaded": sorted(n for n in sys.modules if n.split(".")[0] in PACKAGES),
        "entry_point": upload.load() is importlib.import_module("forge.recipes.publishing.upload").main,
        "recipe_modules": sorted(s.module for s in task_specs().values() if s.module),
    }))
    """
)


def test_installed_forge_imports_beside_a_users_modeling_py(installed, user_folder):
    result = _run(installed, [str(installed / "bin" / "python"), "-c", IMPORT_EVERYTHING, *PACKAGES], cwd=user_folder)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["user_modules"] == [True, True]  # Forge shadows nothing of the user's ...
    assert report["loaded"] == ["modeling", "recipes"]  # ... and loads none of the generic names itself
    site_forge = next(installed.glob("lib/python*/site-packages/forge"))
    assert len(report["forge_files"]) > 40
    assert all(Path(f).is_relative_to(site_forge) for f in report["forge_files"])  # the wheel's copy, not a checkout
    assert report["entry_point"] is True
    assert "forge.recipes.sentiment" in report["recipe_modules"]


def test_installed_recipe_runs_as_a_module_under_its_namespace(installed, user_folder):
    result = _run(installed, [str(installed / "bin" / "python"), "-m", "forge.recipes.sentiment", "--help"],
                  cwd=user_folder)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("usage: python -m forge.recipes.sentiment ")


EXPORT = textwrap.dedent(
    """
    import json, sys
    from importlib import resources

    from forge.modeling import ForgeConfig, ForgeForConditionalGeneration
    from forge.recipes.publishing.cards import write_model_card
    from forge.recipes.publishing.export import save_hub_folder
    from forge.tokenization import ForgeTokenizerFast

    corpus = resources.files("forge.recipes").joinpath("sample_data/pretrain/train.jsonl").read_text(encoding="utf-8")
    texts = [json.loads(line)["text"] for line in corpus.splitlines()[:50]]
    tokenizer = ForgeTokenizerFast().train_new_from_iterator(texts, vocab_size=500)
    model = ForgeForConditionalGeneration(ForgeConfig.from_pretrained("forge-tiny", vocab_size=len(tokenizer)))
    folder = save_hub_folder(model, tokenizer, sys.argv[1], task="summarization", overwrite=True)
    write_model_card(folder, model_name="forge-wheel", task="summarization", metrics={"train_loss": 1.0},
                     training_budget="none (untrained)", command="tests/test_packaging.py")
    """
)


def test_installed_export_passes_the_upload_check_without_forge(installed, user_folder):
    """The chain an installed user runs: save a Hub folder (code files copied from forge.modeling), then
    ``forge-hub-upload --dry-run``, whose load check needs a Python without Forge although Forge sits in the very
    site-packages that Python reads torch from (this failed with the top-level packages of a regular install)."""
    folder = user_folder / "hub-folder"
    saved = _run(installed, [str(installed / "bin" / "python"), "-c", EXPORT, str(folder)], cwd=user_folder)
    assert saved.returncode == 0, saved.stderr[-3000:]
    installed_code = next(installed.glob("lib/python*/site-packages/forge/modeling/modeling_forge.py"))
    assert (folder / "modeling_forge.py").read_bytes() == installed_code.read_bytes()  # copied as is, nothing rewritten
    upload = _run(installed, [str(installed / "bin" / "forge-hub-upload"), str(folder), "--repo-id", "me/forge-wheel",
                              "--dry-run"], cwd=user_folder, timeout=600)
    assert upload.returncode == 0, upload.stdout[-3000:] + upload.stderr[-3000:]
    assert "loads without Forge as ForgeForConditionalGeneration; pipeline summarization runs" in upload.stdout
