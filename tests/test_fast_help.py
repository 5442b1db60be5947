"""``--help`` of every recipe without importing torch, and the recorded help equal to the full parser's.

The record (``recipes/core/help_cache.json``) is what ``python -m recipes.<name> --help`` prints from; when a test
here fails because it is stale, rewrite it with ``python -m recipes.core.fast_help`` and commit the result.
"""

import contextlib
import io
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from recipes.core import fast_help

# The recipes whose --help is served from the record, and the command-line tools that never needed one.
RECORDED = ["recipes.sentiment", "recipes.translation", "recipes.summarization", "recipes.qa", "recipes.srl",
            "recipes.nli", "recipes.pretrain", "recipes.main_job"]
PLAIN = ["recipes.demo", "recipes.convert_up"]
HEAVY = {"torch", "transformers", "datasets", "evaluate", "accelerate", "gradio"}
STALE = f"the --help record is stale: rewrite it with `{fast_help.REGENERATE}` and commit recipes/core/help_cache.json"


def _full_help(module: str, monkeypatch: pytest.MonkeyPatch, columns: int) -> str:
    monkeypatch.setenv("COLUMNS", str(columns))  # argparse wraps help to this width
    return fast_help.full_parser(module)[0].format_help()


def test_record_is_current():
    """The committed record is what the parsers give now: same transformers version, sources, groups and options."""
    recorded = json.loads(fast_help.CACHE_PATH.read_text(encoding="utf-8"))
    assert fast_help.build_cache() == recorded, STALE


def test_every_registered_recipe_is_recorded():
    assert sorted(RECORDED) == fast_help.cached_modules()


@pytest.mark.parametrize("module", RECORDED)
def test_recorded_help_equals_full_parser(module, monkeypatch):
    """Character for character at a narrow, a usual and a wide terminal: groups, flags, help texts, wrapping."""
    cached = fast_help.cached_parser(module)
    assert cached is not None, STALE
    for columns in (60, 100, 200):
        full = _full_help(module, monkeypatch, columns)
        assert cached.format_help() == full, f"{module} at {columns} columns: {STALE}"
    assert "--learning_rate" in full or module == "recipes.main_job"


def _run_help(module: str, flag: str) -> tuple[str, set[str]]:
    """stdout of ``python -m module flag`` and the top-level packages it imported (``-X importtime``)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", module, flag], capture_output=True, text=True,
                          env=dict(os.environ, COLUMNS="100"), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in proc.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    assert "argparse" in imported  # the trace was read
    return proc.stdout, imported


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("module", RECORDED)
def test_help_does_not_import_torch(module, flag, monkeypatch):
    """The command a user types prints the full parser's help, and imports none of torch, transformers, datasets, ..."""
    out, imported = _run_help(module, flag)
    assert not imported & HEAVY, f"{module} {flag} imported {sorted(imported & HEAVY)}: {STALE}"
    assert out == _full_help(module, monkeypatch, 100)


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("module", PLAIN)
def test_plain_tools_help_does_not_import_torch(module, flag, monkeypatch):
    out, imported = _run_help(module, flag)
    assert not imported & HEAVY, f"{module} {flag} imported {sorted(imported & HEAVY)}"
    monkeypatch.setenv("COLUMNS", "100")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(SystemExit):
        __import__(module, fromlist=["main"]).main([flag])
    assert out == printed.getvalue()


SENTIMENT = SimpleNamespace(name="recipes.sentiment")  # the __spec__ of `python -m recipes.sentiment`


def test_lone_help_flag_prints_the_record_and_exits(capsys):
    with pytest.raises(SystemExit) as exited:
        fast_help.exit_with_help_if_asked(SENTIMENT, ["-h"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("usage: python -m recipes.sentiment ")


@pytest.mark.parametrize("argv", [["--help", "--do_train"], ["--output_dir", "x"], [], ["config.yaml"], ["--hel"]])
def test_other_command_lines_go_to_the_full_parser(argv):
    """Anything but a lone -h/--help is the recipe's own parser's: it parses and reports errors as before."""
    assert fast_help.exit_with_help_if_asked(SENTIMENT, argv) is None
    assert fast_help.exit_with_help_if_asked(None, ["--help"]) is None  # run as a file path: no module name


def test_stale_record_is_not_used(tmp_path, monkeypatch):
    """A record made with other sources or another transformers version gives way to the full parser."""
    recorded = json.loads(fast_help.CACHE_PATH.read_text(encoding="utf-8"))
    assert fast_help.cached_parser("recipes.sentiment", fast_help.CACHE_PATH) is not None, STALE
    edited = dict(recorded, sources=dict(recorded["sources"], **{"recipes/core/args.py": "0" * 64}))
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    assert fast_help.cached_parser("recipes.sentiment", tmp_path / "edited.json") is None
    assert fast_help.cached_parser("recipes.main_job", tmp_path / "edited.json") is not None  # not built from args.py
    (tmp_path / "other.json").write_text(json.dumps(dict(recorded, transformers="5.0.0.dev0")))
    assert fast_help.cached_parser("recipes.sentiment", tmp_path / "other.json") is None
    (tmp_path / "broken.json").write_text("{")
    assert fast_help.cached_parser("recipes.sentiment", tmp_path / "broken.json") is None

    monkeypatch.setattr(fast_help, "CACHE_PATH", tmp_path / "edited.json")
    assert fast_help.exit_with_help_if_asked(SENTIMENT, ["--help"]) is None  # falls through to the full parser
