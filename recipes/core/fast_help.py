"""``--help`` without importing torch: each recipe's options, recorded from its full parser and checked at run time.

A recipe's parser is built from transformers' ``TrainingArguments``, and importing those loads torch, datasets and
accelerate: seconds before argparse can print anything. ``--help`` needs none of that, only the parser's groups
and options. So ``python -m recipes.core.fast_help`` builds every recipe's full parser once and records what
argparse prints from it (group titles and descriptions; each option's flags, help, metavar, choices, nargs) in
``recipes/core/help_cache.json``, together with the transformers version and the SHA-256 of the Forge files
that define those options. A recipe's first statement is::

    if __name__ == "__main__":  # --help before the imports below load torch (recipes/core/fast_help.py)
        from recipes.core.fast_help import exit_with_help_if_asked

        exit_with_help_if_asked(__spec__)

For a command line of exactly ``-h`` or ``--help``, :func:`exit_with_help_if_asked` rebuilds a plain argparse
parser from the record, prints its help (argparse itself lays it out for this terminal, so it wraps the same
as the full parser would) and exits. In every other case it returns and the recipe runs as before, its own
parser and ``--help`` included: a record made with another transformers version, or before one of its source
files changed, is not used, so a stale record costs time, never a wrong help text.
``tests/test_fast_help.py`` fails while the record is stale and checks that the recorded help equals the full
parser's, character for character; rewrite it with ``python -m recipes.core.fast_help``.

The record holds what argparse formats, not the rendered text, because argparse wraps help to the width of
the terminal. Only the standard library is imported on the fast path.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any, Optional

__all__ = [
    "CACHE_PATH", "build_cache", "cached_modules", "cached_parser", "exit_with_help_if_asked", "full_parser",
    "record_parser", "write_cache",
]

CACHE_PATH = Path(__file__).with_name("help_cache.json")
ROOT = Path(__file__).resolve().parents[2]  # the folder holding the recipes package (the repository root)
REGENERATE = "python -m recipes.core.fast_help"
HELP_FLAGS = (["-h"], ["--help"])
# Forge's own packages: their files are part of a record's key; transformers' are covered by its version.
OWN_PACKAGES = ("recipes", "modeling", "tokenization")
# The argparse formatters a record can name (a recipe's own formatter class could not be rebuilt without it).
FORMATTERS = ("HelpFormatter", "RawDescriptionHelpFormatter", "RawTextHelpFormatter", "ArgumentDefaultsHelpFormatter",
              "MetavarTypeHelpFormatter")
# The action attributes a help string may interpolate (argparse's "%(default)s") that a record can reproduce.
INTERPOLATED = ("default", "const", "choices", "dest", "metavar", "nargs", "required", "option_strings", "prog")


# --------------------------------------------------------------------------------------------
# The fast path (standard library only)
# --------------------------------------------------------------------------------------------
def exit_with_help_if_asked(module_spec: Any, argv: Optional[list[str]] = None) -> None:
    """Print the recorded ``--help`` of the module run as ``python -m <module>`` and exit, when that is all asked.

    Returns without doing anything unless ``argv`` (default ``sys.argv[1:]``) is exactly ``-h`` or ``--help``
    and the module's record is current; the recipe's own parser then handles the command line.
    """
    args = sys.argv[1:] if argv is None else argv
    if module_spec is None or list(args) not in HELP_FLAGS:
        return
    parser = cached_parser(module_spec.name)
    if parser is None:
        return
    parser.print_help()
    sys.exit(0)  # as argparse's own help action does


def cached_parser(module: str, cache_path: Optional[Path] = None) -> Optional[argparse.ArgumentParser]:
    """A parser that prints ``module``'s ``--help``, rebuilt from the record; None when there is no current record.

    The parser is for printing help only: its options parse nothing.
    """
    try:
        cache = json.loads((cache_path or CACHE_PATH).read_text(encoding="utf-8"))
        record = cache["parsers"].get(module)
        if record is None or cache["transformers"] != _transformers_version():
            return None
        if any(_digest(ROOT / path) != cache["sources"][path] for path in record["sources"]):
            return None
        return _parser_from_record(record, cache["actions"])
    except (OSError, ValueError, KeyError, ImportError):  # no record, a damaged one, or no transformers: the full path
        return None


def _transformers_version() -> str:
    from importlib.metadata import version  # the installed version, without importing transformers

    return version("transformers")


def _digest(path: Path) -> str:
    """SHA-256 of a source file, line endings normalised (a Windows checkout gives the same digest)."""
    return hashlib.sha256(path.read_bytes().replace(b"\r\n", b"\n")).hexdigest()


class _ListedOption(argparse.Action):
    """An option of a recorded parser: it carries what ``--help`` shows and is never parsed."""

    def __init__(self, option_strings: list[str], dest: str, usage: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.usage = usage

    def format_usage(self) -> str:
        return self.usage or super().format_usage()  # --flag | --no-flag of BooleanOptionalAction

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Optional[str] = None) -> None:
        raise NotImplementedError("a parser rebuilt from the help record prints help only")


def _unsuppress(value: Any) -> Any:
    """argparse tests ``is SUPPRESS``; a string read from JSON is equal to it but not the same object."""
    return argparse.SUPPRESS if value == argparse.SUPPRESS else value


def _parser_from_record(record: dict[str, Any], actions: dict[str, dict[str, Any]]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=record["prog"], usage=record["usage"], description=record["description"], epilog=record["epilog"],
        formatter_class=getattr(argparse, record["formatter_class"]), prefix_chars=record["prefix_chars"],
        add_help=False,  # the recorded -h/--help is added with the other options, in its own group
    )
    # argparse starts every parser with the positional and optional groups (those two come first in the record);
    # group titles and the order of the parser's actions are set through argparse's attributes, as
    # recipes/core/cli.py does to group the full parser's help.
    built: dict[str, argparse.Action] = {}
    for index, group_record in enumerate(record["groups"]):
        if index < len(parser._action_groups):
            group = parser._action_groups[index]
            group.title, group.description = group_record["title"], group_record["description"]
        else:
            group = parser.add_argument_group(group_record["title"], group_record["description"])
        for key in group_record["actions"]:
            built[key] = _add_action(group, actions[key])
    parser._actions[:] = [built[key] for key in record["order"]]  # the usage line lists them in this order
    return parser


def _add_action(group: Any, record: dict[str, Any]) -> argparse.Action:
    kwargs: dict[str, Any] = {
        "action": _ListedOption, "nargs": _unsuppress(record.get("nargs")), "help": _unsuppress(record.get("help")),
        "default": _unsuppress(record.get("default")), "const": record.get("const"), "choices": record.get("choices"),
        "usage": record.get("usage"),
    }
    metavar = record.get("metavar")
    kwargs["metavar"] = tuple(metavar) if isinstance(metavar, list) else _unsuppress(metavar)
    if record["flags"]:
        return group.add_argument(*record["flags"], dest=record["dest"], required=record.get("required", False),
                                  **kwargs)
    return group.add_argument(record["dest"], **kwargs)  # a positional: argparse decides `required` from nargs


# --------------------------------------------------------------------------------------------
# Writing the record (imports the recipes, and so transformers and torch)
# --------------------------------------------------------------------------------------------
def cached_modules() -> list[str]:
    """The modules whose ``--help`` is recorded: every registered task's recipe (pretraining too) and the main job."""
    from .registry import task_specs

    return sorted({spec.module for spec in task_specs().values() if spec.module} | {"recipes.main_job"})


def full_parser(module_name: str) -> tuple[argparse.ArgumentParser, list[str]]:
    """``module_name``'s full parser, as its command line builds it, and the Forge modules that define it.

    A module with its own argparse parser exposes ``build_parser()`` (the main job: its parser lists the main-job
    tasks, so it depends on the task registry and every recipe module). A recipe parses dataclasses through
    :func:`recipes.core.args.build_parser`: its ``ARGUMENT_TYPES``, else those of its task spec's driver run.
    """
    import importlib

    module = importlib.import_module(module_name)
    if hasattr(module, "build_parser"):
        from .registry import task_specs

        specs = {spec.module for spec in task_specs().values() if spec.module}
        return module.build_parser(), sorted({module_name, "recipes.core.registry", *specs})

    from .args import build_parser
    from .cli import cli_identity
    from .driver import task_argument_types

    types = getattr(module, "ARGUMENT_TYPES", None) or task_argument_types(module.SPEC)
    prog, description = cli_identity(module)
    defined_in = {cls.__module__ for cls_type in types for cls in cls_type.__mro__}
    sources = {module_name, "recipes.core.args", "recipes.core.cli"}
    sources |= {name for name in defined_in if name.split(".")[0] in OWN_PACKAGES}
    return build_parser(*types, prog=prog, description=description), sorted(sources)


def record_parser(parser: argparse.ArgumentParser) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``(parser record, its actions by key)``: what argparse needs to print ``parser``'s help.

    Raises:
        ValueError: the parser uses something a record cannot rebuild (a custom formatter class, mutually
            exclusive groups, a help string that interpolates ``%(type)s``).
    """
    formatter = parser.formatter_class.__name__
    if getattr(argparse, formatter, None) is not parser.formatter_class or formatter not in FORMATTERS:
        raise ValueError(f"{parser.prog}: the help record supports argparse's own formatters, not {formatter}.")
    if parser._mutually_exclusive_groups:
        raise ValueError(f"{parser.prog}: the help record does not support mutually exclusive groups.")
    shows_defaults = issubclass(parser.formatter_class, argparse.ArgumentDefaultsHelpFormatter)
    records: dict[str, dict[str, Any]] = {}
    keys: dict[int, str] = {}
    for action in parser._actions:
        record = _record_action(parser.prog, action, shows_defaults)
        keys[id(action)] = key = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]
        records[key] = record
    groups = [
        {"title": group.title, "description": group.description,
         "actions": [keys[id(action)] for action in group._group_actions]}
        for group in parser._action_groups
    ]
    record = {
        "prog": parser.prog, "usage": parser.usage, "description": parser.description, "epilog": parser.epilog,
        "formatter_class": formatter, "prefix_chars": parser.prefix_chars, "groups": groups,
        "order": [keys[id(action)] for action in parser._actions],
    }
    return record, records


def _record_action(prog: str, action: argparse.Action, shows_defaults: bool) -> dict[str, Any]:
    used = set(re.findall(r"%\((\w+)\)", action.help or ""))
    if used - set(INTERPOLATED):
        raise ValueError(f"{prog}: the help of {action.option_strings or action.dest} uses "
                         f"{sorted(used - set(INTERPOLATED))}, which the help record cannot reproduce.")
    record: dict[str, Any] = {"flags": list(action.option_strings), "dest": action.dest}
    if action.nargs is not None:
        record["nargs"] = action.nargs
    if action.help is not None:
        record["help"] = action.help
    if action.metavar is not None:
        record["metavar"] = list(action.metavar) if isinstance(action.metavar, tuple) else action.metavar
    if action.choices is not None:
        record["choices"] = [str(choice) for choice in action.choices]  # how argparse prints them
    if action.required and action.option_strings:
        record["required"] = True
    # Defaults only where the help shows them (they may be machine-specific paths elsewhere), as argparse prints them.
    if action.default is argparse.SUPPRESS:
        record["default"] = argparse.SUPPRESS
    elif shows_defaults or "default" in used:
        record["default"] = str(action.default)
    if "const" in used:
        record["const"] = str(action.const)
    if action.option_strings and action.format_usage() != action.option_strings[0]:
        record["usage"] = action.format_usage()
    return record


def build_cache(modules: Optional[list[str]] = None) -> dict[str, Any]:
    """The help record of ``modules`` (default: :func:`cached_modules`)."""
    from importlib import import_module

    parsers: dict[str, Any] = {}
    actions: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in modules or cached_modules():
        parser, source_modules = full_parser(name)
        record, records = record_parser(parser)
        paths = []
        for source in source_modules:
            path = Path(import_module(source).__file__).resolve().relative_to(ROOT).as_posix()
            sources[path] = _digest(ROOT / path)
            paths.append(path)
        parsers[name] = {"sources": sorted(paths), **record}
        actions.update(records)
    return {
        "generated_by": REGENERATE,
        "transformers": _transformers_version(),
        "sources": dict(sorted(sources.items())),
        "parsers": parsers,
        "actions": dict(sorted(actions.items())),
    }


def write_cache(path: Path = CACHE_PATH) -> dict[str, Any]:
    """Rebuild the record of every recipe's parser and write it to ``path`` (deterministic: same sources, same file)."""
    cache = build_cache()
    path.write_text(json.dumps(cache, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return cache


if __name__ == "__main__":
    written = write_cache()
    print(f"recorded the --help of {len(written['parsers'])} modules (transformers {written['transformers']}) "
          f"in {CACHE_PATH.relative_to(ROOT)}")
