"""Save a trained Forge model as a Hub-ready folder.

A Hub-ready folder loads with ``trust_remote_code=True`` on a machine where Forge is not installed:
it carries the code files (copied flat, relative imports only), a ``config.json`` whose ``auto_map``
names every Forge head, the tokenizer in both forms (fast ``tokenizer.json`` and slow
``vocab.json`` + ``merges.txt``), safetensors weights, and for the tasks transformers 5 no longer
ships a ``custom_pipelines`` entry so that ``pipeline("summarization", model=FOLDER,
trust_remote_code=True)`` works.

Saves are atomic in the sense users rely on: the files are written under a temporary name first and
moved into place with ``os.replace``, ``config.json`` last, so a folder that holds ``config.json``
always holds a complete model (the old one or the new one), even if the process dies mid-save.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..core.layout import modeling, module_name
from ..core.safety import honour_umask

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"
GENERATION_CONFIG_NAME = "generation_config.json"


def _ref(cls: type) -> str:
    """``module.Class`` as a saved folder names it (the code files are copied flat)."""
    return f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}"


# auto class -> "module.Class" inside the saved folder; every Forge head, whatever head was saved,
# so one folder serves AutoModelForSeq2SeqLM and the encoder heads alike. Read from modeling.AUTO_CLASSES.
MODEL_AUTO_MAP: dict[str, str] = {
    "AutoConfig": _ref(modeling.ForgeConfig),
    **{auto_class: _ref(model_class) for auto_class, model_class in modeling.AUTO_CLASSES.items()},
}
TOKENIZER_AUTO_MAP: dict[str, list[str | None]] = {
    "AutoTokenizer": ["tokenization_forge.ForgeTokenizer", "tokenization_forge_fast.ForgeTokenizerFast"],
}
TOKENIZER_CLASS = "ForgeTokenizerFast"

MODEL_CODE_FILES: tuple[str, ...] = (
    "configuration_forge.py", "modeling_forge.py", "mixers_forge.py", "generation_forge.py", "pipeline_forge.py",
)
TOKENIZER_CODE_FILES: tuple[str, ...] = ("tokenization_forge.py", "tokenization_forge_fast.py")
CODE_FILES: tuple[str, ...] = MODEL_CODE_FILES + TOKENIZER_CODE_FILES
TOKENIZER_FILES: tuple[str, ...] = ("tokenizer.json", TOKENIZER_CONFIG_NAME, "vocab.json", "merges.txt")

# Tasks whose pipeline ships in pipeline_forge.py and travels with the folder (transformers 5 removed the
# built-in summarization / translation / text2text-generation / question-answering pipelines).
CUSTOM_PIPELINES: dict[str, dict[str, Any]] = {
    task: {"impl": _ref(pipeline_class), "pt": [auto_class]}
    for task, (pipeline_class, auto_class, _) in modeling.pipeline_forge.FORGE_PIPELINES.items()
}


def builtin_pipeline_tasks() -> dict[str, str]:
    """Registered tasks that transformers' own pipelines serve for Forge folders as they are: task -> Auto class."""
    from ..core.registry import task_specs

    return {spec.pipeline_task: spec.auto_class for spec in task_specs().values()
            if spec.pipeline_task not in CUSTOM_PIPELINES}


def supported_tasks() -> tuple[str, ...]:
    """Every pipeline task a saved folder can serve."""
    return tuple(CUSTOM_PIPELINES) + tuple(builtin_pipeline_tasks())


def __getattr__(name: str) -> Any:
    """``BUILTIN_PIPELINE_TASKS`` / ``SUPPORTED_TASKS``: read from the task registry when first asked for."""
    if name == "BUILTIN_PIPELINE_TASKS":
        return builtin_pipeline_tasks()
    if name == "SUPPORTED_TASKS":
        return supported_tasks()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# A torch pickle can run arbitrary code when loaded; Forge folders never hold one.
PICKLE_SUFFIXES: tuple[str, ...] = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


class OutputDirExistsError(FileExistsError):
    """The output folder already holds a finished model and ``overwrite`` was not set."""


def is_finished_model_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` holds a finished model: ``config.json`` plus safetensors weights."""
    path = Path(path)
    has_weights = (path / "model.safetensors").is_file() or (path / "model.safetensors.index.json").is_file()
    return (path / CONFIG_NAME).is_file() and has_weights


def check_output_dir(output_dir: str | os.PathLike, overwrite: bool = False) -> None:
    """Raise before any work is done if ``output_dir`` holds a finished model and ``overwrite`` is False.

    Recipes call this at start-up so that a run does not train for an hour and then refuse to save.
    """
    if not overwrite and is_finished_model_dir(output_dir):
        raise OutputDirExistsError(
            f"{output_dir} already holds a finished model; add --overwrite_output_dir to replace it "
            "(overwrite=True from Python; checkpoints and logs in the folder are kept), or choose another "
            "output folder."
        )


def _auto_class_for(model: Any) -> str:
    """The auto class that loads ``model``'s head, from MODEL_AUTO_MAP."""
    class_name = type(model).__name__
    for auto_class, ref in MODEL_AUTO_MAP.items():
        if auto_class != "AutoConfig" and ref.split(".")[-1] == class_name:
            return auto_class
    raise ValueError(
        f"save_hub_folder expects a Forge model, got {class_name}; known heads: "
        f"{', '.join(ref.split('.')[-1] for ref in list(MODEL_AUTO_MAP.values())[1:])}."
    )


def _code_dirs(obj: Any | None, package: str) -> list[Path]:
    """Folders to take code files from: the one defining ``obj``'s class, then Forge's ``package`` ("modeling").

    A model loaded with trust_remote_code lives in transformers' module cache, so its own folder comes
    first; the package is the fallback (and the only source for files that folder lacks).
    """
    dirs: list[Path] = []
    if obj is not None:
        try:
            dirs.append(Path(inspect.getfile(type(obj))).resolve().parent)
        except (TypeError, OSError):
            pass
    name = module_name(package)  # forge.modeling when installed: the files are copied as they are (relative imports)
    try:
        module = importlib.import_module(name)
        dirs.append(Path(module.__file__).resolve().parent)
    except ModuleNotFoundError as error:  # absent is fine (a Python without Forge); broken must fail loudly
        if error.name != name:
            raise
    return dirs


def _copy_code(dest: Path, names: tuple[str, ...], sources: list[Path]) -> list[Path]:
    copied = []
    for name in names:
        for source in sources:
            if (source / name).is_file():
                shutil.copyfile(source / name, dest / name)
                copied.append(dest / name)
                break
        else:
            raise FileNotFoundError(
                f"Cannot find the code file {name} (looked in {', '.join(map(str, sources)) or 'nothing'}); "
                "is the Forge package installed (pip install -e .)?"
            )
    return copied


def _read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True, ensure_ascii=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        honour_umask(tmp)  # mkstemp made it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _patch_config(config_path: Path, task: str | None) -> None:
    config = _read_json(config_path)
    config["auto_map"] = dict(MODEL_AUTO_MAP)
    if task in CUSTOM_PIPELINES:
        config["custom_pipelines"] = {task: json.loads(json.dumps(CUSTOM_PIPELINES[task]))}
    else:
        config.pop("custom_pipelines", None)
    _write_json_atomic(config_path, config)


def _patch_generation_config(path: Path) -> None:
    """Store the evaluation length limit as ``max_new_tokens``, not ``max_length``.

    Pipeline users call ``summarizer(text, max_new_tokens=40)``; a saved ``max_length`` next to that makes
    transformers warn on every call that both are set. For an encoder-decoder, ``max_length`` counts the
    decoder start token, so the same limit is ``max_length - 1`` new tokens.
    """
    if not path.is_file():
        return
    config = _read_json(path)
    max_length = config.pop("max_length", None)
    if max_length is None:
        return
    config.setdefault("max_new_tokens", max(int(max_length) - 1, 1))
    _write_json_atomic(path, config)


def _patch_tokenizer_config(folder: Path) -> None:
    """Point the tokenizer config at the Forge classes (never the generic backend name, which fails to load)."""
    path = folder / TOKENIZER_CONFIG_NAME
    config = _read_json(path) if path.is_file() else {}
    config["auto_map"] = json.loads(json.dumps(TOKENIZER_AUTO_MAP))
    config["tokenizer_class"] = TOKENIZER_CLASS
    _write_json_atomic(path, config)


def _write_slow_tokenizer_files(folder: Path) -> None:
    """Derive vocab.json + merges.txt from tokenizer.json when the tokenizer did not save them itself.

    The slow (pure Python) ForgeTokenizer loads from these two files; both tokenizers then share one
    vocabulary by construction.
    """
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return
    bpe = _read_json(folder / "tokenizer.json")["model"]
    if bpe.get("type") != "BPE":
        raise ValueError(f"tokenizer.json holds a {bpe.get('type')} model; Forge tokenizers are byte-level BPE.")
    with open(folder / "vocab.json", "w", encoding="utf-8") as f:
        json.dump(bpe["vocab"], f, ensure_ascii=False)
    with open(folder / "merges.txt", "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for merge in bpe["merges"]:
            f.write((merge if isinstance(merge, str) else " ".join(merge)) + "\n")


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def _is_model_file(name: str) -> bool:
    """Files a previous save_hub_folder may have written (and an overwrite must not leave stale)."""
    return (
        name.startswith("model.safetensors")
        or (name.startswith("model-") and name.endswith(".safetensors"))
        or name in {"generation_config.json", "special_tokens_map.json", "added_tokens.json", "chat_template.jinja"}
        or name in TOKENIZER_FILES
        or name in CODE_FILES
    )


def _move_into(tmp: Path, output_dir: Path) -> None:
    """Move every file of ``tmp`` into ``output_dir``, config.json last.

    The old config.json goes first, so at every moment either a complete model has its config.json in
    place or there is no config.json at all.
    """
    new_names = {p.name for p in tmp.iterdir()}
    (output_dir / CONFIG_NAME).unlink(missing_ok=True)
    for old in output_dir.iterdir():
        if old.is_file() and old.name not in new_names and _is_model_file(old.name):
            old.unlink()
    for name in sorted(new_names - {CONFIG_NAME}):
        os.replace(tmp / name, output_dir / name)
    os.replace(tmp / CONFIG_NAME, output_dir / CONFIG_NAME)


def _pipeline_task(task: str) -> str:
    """The pipeline task of ``task`` (a pipeline task, or a registry name or alias such as "qa")."""
    if task in CUSTOM_PIPELINES:
        return task
    from ..core.registry import get_task

    try:
        return get_task(task).pipeline_task
    except ValueError:
        raise ValueError(
            f"Unknown task {task!r} for save_hub_folder; choose one of {', '.join(supported_tasks())}."
        ) from None


def save_hub_folder(
    model: Any,
    tokenizer: Any,
    output_dir: str | os.PathLike,
    *,
    task: str | None = None,
    overwrite: bool = False,
    space: bool | str = False,
) -> Path:
    """Save ``model`` and ``tokenizer`` as a folder that loads anywhere with ``trust_remote_code=True``.

    Args:
        model: a Forge model (any head).
        tokenizer: a ForgeTokenizerFast (or ForgeTokenizer).
        output_dir: destination; created if missing. Other files there (Trainer checkpoints, logs,
            README.md) are kept.
        task: the pipeline task the folder serves (or a registry task name such as "qa"): one of
            ``supported_tasks()`` or None. Tasks with a Forge
            pipeline (summarization, translation, question-answering, semantic-role-labeling,
            text2text-generation) get a ``custom_pipelines`` entry in config.json.
        overwrite: replace a finished model already in ``output_dir``; without it that raises
            ``OutputDirExistsError``.
        space: also write ``output_dir/space/`` (``app.py`` + ``requirements.txt`` + Space README): the
            ``python -m recipes.demo`` page as a Hugging Face Space. True: the app loads this folder; a
            string: the Hub repo id the Space loads (see ``recipes.demo.write_space``).

    Returns:
        The output folder.
    """
    if task is not None:
        task = _pipeline_task(task)
    auto_class = _auto_class_for(model)
    wanted = CUSTOM_PIPELINES[task]["pt"][0] if task in CUSTOM_PIPELINES else builtin_pipeline_tasks().get(task)
    if wanted is not None and wanted != auto_class:
        raise ValueError(
            f"task={task!r} needs a model loaded with {wanted}, but got {type(model).__name__} ({auto_class})."
        )
    output_dir = Path(output_dir)
    check_output_dir(output_dir, overwrite)

    # Registration makes save_pretrained copy the code files and write auto_map entries; the complete
    # maps are written afterwards (save_pretrained only records the saved head).
    type(model.config).register_for_auto_class()
    type(model).register_for_auto_class(auto_class)
    type(tokenizer).register_for_auto_class("AutoTokenizer")

    fresh = not output_dir.exists()
    parent = output_dir.parent if fresh else output_dir
    parent.mkdir(parents=True, exist_ok=True)
    # The temporary folder sits on the same filesystem as the destination, so os.replace is a rename.
    tmp = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.forge-save-", dir=parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _copy_code(tmp, MODEL_CODE_FILES, _code_dirs(model, "modeling"))
        _copy_code(tmp, TOKENIZER_CODE_FILES, _code_dirs(tokenizer, "tokenization"))
        _write_slow_tokenizer_files(tmp)
        _patch_tokenizer_config(tmp)
        _patch_config(tmp / CONFIG_NAME, task)
        _patch_generation_config(tmp / GENERATION_CONFIG_NAME)
        for pickled in [p for p in tmp.iterdir() if p.suffix in PICKLE_SUFFIXES]:
            pickled.unlink()  # safetensors only (a pickle can run code when loaded)
        if not is_finished_model_dir(tmp):
            raise RuntimeError(f"save_pretrained wrote no safetensors weights into {tmp}; nothing was moved.")
        honour_umask(tmp)  # mkdtemp made it 0700: other users could not load the model
        _fsync_tree(tmp)
        if fresh:
            try:
                os.rename(tmp, output_dir)
            except OSError:  # someone created output_dir meanwhile: fall back to moving files one by one
                output_dir.mkdir(parents=True, exist_ok=True)
                check_output_dir(output_dir, overwrite)
                _move_into(tmp, output_dir)
        else:
            _move_into(tmp, output_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if space:
        from ..demo import write_space

        write_space(output_dir, space if isinstance(space, str) else None)
    logger.info("Saved a Hub-ready %s folder (task=%s) to %s", type(model).__name__, task, output_dir)
    return output_dir


def copy_code_files(dest_dir: str | os.PathLike, *, task: str | None = None) -> list[Path]:
    """Copy the Forge code files into ``dest_dir`` (e.g. a Trainer ``checkpoint-*`` folder).

    Trainer checkpoints carry weights and configs but not the ``.py`` files, so on their own they do not
    load with ``trust_remote_code``. This copies the code from the installed packages and, where
    ``config.json`` / ``tokenizer_config.json`` exist, adds the full ``auto_map`` (and the task's
    ``custom_pipelines`` entry when ``task`` has one; an existing entry is kept when ``task`` is None).

    Returns:
        The copied code files.
    """
    dest = Path(dest_dir)
    if not dest.is_dir():
        raise FileNotFoundError(f"copy_code_files: {dest} is not a folder.")
    copied = _copy_code(dest, MODEL_CODE_FILES, _code_dirs(None, "modeling"))
    copied += _copy_code(dest, TOKENIZER_CODE_FILES, _code_dirs(None, "tokenization"))
    config_path = dest / CONFIG_NAME
    if config_path.is_file():
        config = _read_json(config_path)
        config["auto_map"] = dict(MODEL_AUTO_MAP)
        if task in CUSTOM_PIPELINES:
            config["custom_pipelines"] = {task: json.loads(json.dumps(CUSTOM_PIPELINES[task]))}
        _write_json_atomic(config_path, config)
    if (dest / TOKENIZER_CONFIG_NAME).is_file():
        _patch_tokenizer_config(dest)
    return copied


__all__ = [
    "BUILTIN_PIPELINE_TASKS",
    "builtin_pipeline_tasks",
    "supported_tasks",
    "CODE_FILES",
    "CUSTOM_PIPELINES",
    "MODEL_AUTO_MAP",
    "OutputDirExistsError",
    "PICKLE_SUFFIXES",
    "SUPPORTED_TASKS",
    "TOKENIZER_AUTO_MAP",
    "TOKENIZER_FILES",
    "check_output_dir",
    "copy_code_files",
    "is_finished_model_dir",
    "save_hub_folder",
]
