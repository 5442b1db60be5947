"""What a model folder may do to the machine that loads it, and what a run may leave on disk.

Small, self-contained checks the recipes call at their few load/save points:

- **No code from a folder runs when Forge is installed.** :func:`remote_code_allowed` turns
  ``--trust_remote_code`` off whenever the installed ``modeling``/``tokenization`` packages can serve the
  folder (the Auto registrations in their ``__init__`` make transformers use the installed classes);
  :func:`forge_pipeline` builds a folder's pipeline from the installed ``pipeline_forge`` classes.
- **No pickle loads.** :func:`check_safetensors_weights` refuses a folder whose only weights are a
  ``pytorch_model.bin`` and says how to convert it.
- **No secret reaches a file or log.** :func:`redact_argv` / :func:`redact_mapping` blank every value of a
  secret-named flag or key, whatever the value looks like; :class:`JsonArgsTrainerMixin` writes the
  Trainer's arguments as redacted JSON instead of the ``training_args.bin`` pickle.
- **Saved files honour the umask** (:func:`honour_umask`): ``tempfile.mkstemp`` / ``mkdtemp`` create
  0600 / 0700 entries, which a rename would carry into the published folder.
- **A tokenizer folder must hold a vocabulary** (:func:`check_tokenizer_folder`).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .layout import module_name

logger = logging.getLogger(__name__)

REDACTED = "***"

# Flag / key names whose value is a secret, whatever its shape: token, hub_token, hf_token, api_key,
# password, secret, auth, credentials, private_key ... (matched on the name with leading dashes stripped).
_SECRET_NAME = re.compile(r"(^|[_-])(token|password|passwd|secret|api[_-]?key|auth|credentials?|private[_-]?key)$", re.IGNORECASE)

SAFE_WEIGHTS_NAMES = ("model.safetensors", "model.safetensors.index.json")
PICKLE_WEIGHTS_NAMES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")
TRAINING_ARGS_JSON = "training_args.json"


# --------------------------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------------------------
def is_secret_name(name: str) -> bool:
    """True for a flag or key that carries a secret (``--hub_token``, ``token``, ``api-key``, ...)."""
    return bool(_SECRET_NAME.search(name.lstrip("-")))


def redact_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` with the value of every secret-named flag replaced by ``***``.

    Both ``--flag value`` and ``--flag=value`` are handled; the value's shape does not matter. The
    value-pattern redaction of :func:`recipes.publishing.cards.redact_secrets` stays as a second layer.
    """
    out: list[str] = []
    blank_next = False
    for arg in argv:
        if blank_next:
            out.append(REDACTED)
            blank_next = False
            continue
        if arg.startswith("-") and "=" in arg:
            name, _, _ = arg.partition("=")
            out.append(f"{name}={REDACTED}" if is_secret_name(name) else arg)
            continue
        out.append(arg)
        blank_next = arg.startswith("-") and is_secret_name(arg)
    return out


def redact_mapping(data: Any) -> Any:
    """A copy of a JSON/YAML-like structure with the value of every secret-named key replaced by ``***``."""
    if isinstance(data, Mapping):
        return {
            key: (REDACTED if value not in (None, "", False) else value) if is_secret_name(str(key)) else redact_mapping(value)
            for key, value in data.items()
        }
    if isinstance(data, (list, tuple)):
        return [redact_mapping(item) for item in data]
    return data


class JsonArgsTrainerMixin:
    """Write the Trainer's arguments as redacted ``training_args.json``, never the ``training_args.bin`` pickle.

    ``Trainer._save`` is the one place transformers 5 writes the arguments for checkpoints and for
    ``save_model`` (it ends with ``torch.save(self.args, ...)``); replacing the file right after it covers
    both, and resuming never reads that file. ``push_to_hub`` from the Trainer would upload the pickle
    before we could replace it (``_push_from_checkpoint``), so it is refused: publish with hub_upload.py.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        training_args = kwargs.get("args", args[1] if len(args) > 1 else None)
        if getattr(training_args, "push_to_hub", False):  # before Trainer.__init__, which creates the repo
            raise ValueError(
                "--push_to_hub is not supported by the Forge recipes (the Trainer would upload its arguments, hub "
                "token included, as a pickle). Train without it, then publish with: python hub_upload.py FOLDER --repo-id USER/NAME"
            )
        super().__init__(*args, **kwargs)

    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        super()._save(output_dir, state_dict=state_dict)  # type: ignore[misc]
        if self.args.should_save:
            write_training_args_json(output_dir if output_dir is not None else self.args.output_dir, self.args)


def _trainer_classes() -> tuple[type, type]:
    from transformers import Seq2SeqTrainer, Trainer

    class ForgeTrainer(JsonArgsTrainerMixin, Trainer):
        """``transformers.Trainer`` that keeps its arguments as redacted JSON (no pickle in checkpoints)."""

    class ForgeSeq2SeqTrainer(JsonArgsTrainerMixin, Seq2SeqTrainer):
        """``transformers.Seq2SeqTrainer`` that keeps its arguments as redacted JSON (no pickle in checkpoints)."""

    return ForgeTrainer, ForgeSeq2SeqTrainer


ForgeTrainer, ForgeSeq2SeqTrainer = _trainer_classes()


def write_training_args_json(folder: str | os.PathLike, args: Any) -> Path:
    """Replace ``folder/training_args.bin`` (a pickle) by ``training_args.json`` with secrets redacted."""
    folder = Path(folder)
    (folder / "training_args.bin").unlink(missing_ok=True)
    data = args.to_dict() if hasattr(args, "to_dict") else dict(vars(args))
    path = folder / TRAINING_ARGS_JSON
    path.write_text(json.dumps(redact_mapping(data), indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# Remote code
# --------------------------------------------------------------------------------------------
def forge_installed() -> bool:
    """True when the Forge packages import (and so register their classes with the Auto classes)."""
    try:
        from .layout import modeling, tokenization  # noqa: F401
    except ImportError:
        return False
    return True


def remote_code_allowed(requested: bool) -> bool:
    """Whether a folder's Python files may run: only when asked for AND Forge is not installed.

    With Forge installed, transformers resolves a ``model_type: forge`` folder to the installed classes
    (``resolve_trust_remote_code`` accepts ``False`` when local code exists), so the folder's own
    ``modeling_forge.py`` etc. are never imported, whatever the folder holds.
    """
    if not requested:
        return False
    if forge_installed():
        logger.warning("--trust_remote_code ignored: Forge is installed, so its own classes load the folder and no "
                       "Python file from the folder is run.")
        return False
    return True


def forge_pipeline(task: str, folder: str | os.PathLike, **kwargs: Any) -> Any:
    """``pipeline(task, model=folder)`` with the installed Forge pipeline class, never the folder's copy."""
    from transformers import pipeline

    from .layout import modeling  # the import registers Forge with the Auto classes

    pipeline_forge = modeling.pipeline_forge

    config_path = Path(folder) / "config.json"
    custom = json.loads(config_path.read_text(encoding="utf-8")).get("custom_pipelines", {}) if config_path.is_file() else {}
    if task in custom:
        class_name = custom[task]["impl"].rsplit(".", 1)[-1]
        kwargs["pipeline_class"] = getattr(pipeline_forge, class_name)
    return pipeline(task, model=str(folder), trust_remote_code=False, **kwargs)


# --------------------------------------------------------------------------------------------
# Weights and tokenizer files
# --------------------------------------------------------------------------------------------
def convert_to_safetensors_hint(folder: str | os.PathLike) -> str:
    """How to convert a trusted ``pytorch_model.bin`` folder to safetensors (the user runs it on their own file)."""
    return (
        "If the file is yours and you trust it, convert it once (use your head's class, e.g. "
        "ForgeForSequenceClassification):\n"
        f"    import torch; from {module_name('modeling')} import ForgeConfig, ForgeForConditionalGeneration\n"
        f"    folder = {str(folder)!r}\n"
        "    model = ForgeForConditionalGeneration(ForgeConfig.from_pretrained(folder))\n"
        "    model.load_state_dict(torch.load(folder + '/pytorch_model.bin', weights_only=True))\n"
        "    model.save_pretrained(folder, safe_serialization=True)  # then delete pytorch_model.bin"
    )


def check_safetensors_weights(folder: str | os.PathLike) -> None:
    """Refuse a local folder whose weights are only a pickle (``pytorch_model.bin``): loading one can run code.

    Hub ids and folders with safetensors weights pass (the loaders also pass ``use_safetensors=True``).
    """
    path = Path(folder)
    if not path.is_dir():
        return
    if any((path / name).is_file() for name in SAFE_WEIGHTS_NAMES):
        return
    pickles = [name for name in PICKLE_WEIGHTS_NAMES if (path / name).is_file()]
    if pickles:
        raise ValueError(
            f"{path} holds only {', '.join(pickles)} (a pickle, which can run code when loaded); Forge loads "
            f"safetensors weights only (model.safetensors).\n{convert_to_safetensors_hint(path)}"
        )


def check_tokenizer_folder(folder: str | os.PathLike) -> None:
    """Refuse a local tokenizer folder without a vocabulary instead of falling back to a blank tokenizer.

    Checked before ``AutoTokenizer`` too: on a folder without config.json it would otherwise fail with advice to
    install sentencepiece. The check itself lives with the tokenizer classes, which apply it in ``from_pretrained``.
    """
    from .layout import tokenization

    tokenization.tokenization_forge.check_vocabulary_present(folder)


# --------------------------------------------------------------------------------------------
# File modes
# --------------------------------------------------------------------------------------------
def current_umask() -> int:
    """The process umask (read by setting and restoring it; there is no read-only call before Python 3.13)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def honour_umask(path: str | os.PathLike) -> None:
    """Give ``path`` (and, for a folder, everything under it) the mode a plain ``open``/``mkdir`` would.

    ``tempfile.mkstemp`` and ``mkdtemp`` create 0600 files and 0700 folders on purpose; a save that renames
    them into place must widen them to ``0666 & ~umask`` / ``0777 & ~umask`` or other users cannot load
    the model.
    """
    mask = current_umask()
    root = Path(path)
    entries = [root] + (sorted(root.rglob("*")) if root.is_dir() and not root.is_symlink() else [])
    for entry in entries:
        if entry.is_symlink():
            continue
        os.chmod(entry, (0o777 if entry.is_dir() else 0o666) & ~mask)


__all__ = [
    "ForgeSeq2SeqTrainer",
    "ForgeTrainer",
    "JsonArgsTrainerMixin",
    "REDACTED",
    "check_safetensors_weights",
    "check_tokenizer_folder",
    "convert_to_safetensors_hint",
    "forge_installed",
    "forge_pipeline",
    "honour_umask",
    "is_secret_name",
    "redact_argv",
    "redact_mapping",
    "remote_code_allowed",
    "write_training_args_json",
]
