"""Run guards: checks that keep a recipe from a silent wrong result or from losing finished work.

Every recipe reaches these through small hooks (``start_run``, ``train``, ``finish_run`` in
:mod:`recipes.core.trainer_utils`, the config-file branch of ``parse_args``, the data loaders). What
they guard against, by class:

- **Training on nothing** (:func:`check_training_plan`, :func:`check_corpus_has_text`,
  :func:`check_training_targets`): learning rate 0 / negative / not finite, ``--max_steps 0``,
  ``--num_train_epochs`` <= 0 without ``--max_steps``, an empty or all-blank pretraining corpus, a
  training split whose every target is empty. All refused before any training.
- **A resume that is another run** (:func:`run_record`, :func:`check_same_run`,
  :class:`RunRecordCallback`): each checkpoint carries ``forge_run.json`` with the arguments that define
  the run; a rerun that would resume from it with different values is refused, naming the flags.
  Which flags *define* a run: every argument except those in :data:`MAY_CHANGE_ON_RESUME` (logging,
  evaluation and saving frequency, evaluation/prediction data and generation settings, loaders,
  launch and Hub options, early stopping, time budget). The training data is compared by content
  (sha256), not by path. ``--overwrite_output_dir`` starts a fresh run instead.
- **A resume with nothing left to do** (:func:`checkpoint_is_final`, :func:`finish_from_checkpoint`):
  a run killed after its last checkpoint but before the export is finished from that checkpoint
  without training another step (the Trainer would train step max_steps + 1).
- **Two runs on one folder** (:func:`acquire_run_lock`): ``output_dir/.forge-run.lock`` holds the owner's
  pid and host; a second run refuses; a lock whose process is gone (same host) is taken over with a warning.
- **Lost work** (:func:`prepare_output_dir`, :func:`save_or_rescue`): the output folder must be a
  writable folder before training; if the final save still fails (disk full, read-only), the trained
  model is written to a rescue folder and the error says where.
- **Unclear errors** (:func:`check_input_files`, :func:`check_datasets_cache_writable`,
  :func:`coerce_config_values`, :func:`drop_unusable_prediction_labels`): unreadable input files, a
  read-only datasets cache, numbers written as strings in YAML/JSON configs, labels that a
  prediction-only run cannot score.
- **A start the recipe's rate would wreck** (:func:`warn_post_norm_start`): a post-norm pretrained model
  fine-tuned at a from-scratch learning rate; a warning that names the rate to give.
"""

from __future__ import annotations

import atexit
import dataclasses
import enum
import errno
import hashlib
import json
import logging
import math
import os
import re
import socket
import tempfile
import time
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Optional

from transformers import TrainerCallback

logger = logging.getLogger(__name__)

__all__ = [
    "RUN_RECORD_NAME",
    "LOCK_NAME",
    "MAY_CHANGE_ON_RESUME",
    "TrainingPlanError",
    "RunMismatchError",
    "RunLockedError",
    "OutputDirNotWritableError",
    "FinalSaveError",
    "InputFileError",
    "check_training_plan",
    "check_corpus_has_text",
    "check_training_targets",
    "check_input_files",
    "check_datasets_cache_writable",
    "raise_if_cache_write_failure",
    "prepare_output_dir",
    "acquire_run_lock",
    "release_run_lock",
    "run_record",
    "check_same_run",
    "RunRecordCallback",
    "checkpoint_is_final",
    "finish_from_checkpoint",
    "save_or_rescue",
    "coerce_config_values",
    "drop_unusable_prediction_labels",
    "POST_NORM_START_MAX_LR",
    "warn_post_norm_start",
]

RUN_RECORD_NAME = "forge_run.json"  # in each checkpoint: the arguments that define the run
LOCK_NAME = ".forge-run.lock"  # in output_dir while a run writes there
RUN_RECORD_ATTR = "_forge_run_record"  # where start_run leaves the record on the TrainingArguments

# Arguments that may differ between a run and its resumption: they change what is logged, evaluated,
# saved or predicted, or how the work is launched, not the training itself. Every other argument
# (learning rate and schedule, seed, batch size and process count, training data and its
# preprocessing, model/config/tokenizer, steps/epochs, precision, ...) defines the run.
MAY_CHANGE_ON_RESUME: frozenset[str] = frozenset({
    # where and how this attempt runs
    "output_dir", "overwrite_output_dir", "resume_from_checkpoint", "local_rank", "use_cpu", "cache_dir",
    "token", "hub_token", "trust_remote_code", "preprocessing_num_workers", "overwrite_cache",
    "do_train", "do_eval", "do_predict", "max_train_minutes", "stop_on_nan",
    # logging and reporting
    "logging_strategy", "logging_steps", "logging_first_step", "log_on_each_node", "logging_nan_inf_filter",
    "include_num_input_tokens_seen", "log_level", "log_level_replica", "disable_tqdm", "report_to", "run_name",
    "project", "trackio_space_id", "trackio_bucket_id", "trackio_static_space_id", "skip_memory_metrics",
    # evaluation, prediction and generation
    "eval_strategy", "eval_steps", "eval_delay", "per_device_eval_batch_size", "prediction_loss_only",
    "eval_on_start", "eval_do_concat_batches", "eval_use_gather_object", "eval_accumulation_steps",
    "include_for_metrics", "batch_eval_metrics", "bf16_full_eval", "fp16_full_eval", "predict_with_generate",
    "generation_max_length", "generation_num_beams", "generation_config", "validation_file", "test_file",
    "max_eval_samples", "max_predict_samples", "num_beams", "length_penalty", "no_repeat_ngram_size",
    "val_max_target_length", "min_target_length", "n_best_size", "max_answer_length",
    "null_score_diff_threshold", "version_2_with_negative", "class_names",
    "early_stopping_patience", "early_stopping_threshold", "load_best_model_at_end", "metric_for_best_model",
    "greater_is_better",
    # checkpointing and publishing
    "save_strategy", "save_steps", "save_on_each_node", "save_total_limit", "save_only_model",
    "enable_jit_checkpoint", "push_to_hub", "hub_private_repo", "hub_model_id", "hub_strategy",
    "hub_always_push", "hub_revision", "restore_callback_states_from_checkpoint",
    # data loading and execution speed (same numbers)
    "dataloader_num_workers", "dataloader_pin_memory", "dataloader_persistent_workers",
    "dataloader_prefetch_factor", "dataloader_multiprocessing_context", "torch_compile", "torch_compile_backend",
    "torch_compile_mode", "torch_empty_cache_steps", "gradient_checkpointing", "gradient_checkpointing_kwargs",
    "activation_checkpointing", "activation_checkpointing_kwargs", "ddp_find_unused_parameters",
    "ddp_bucket_cap_mb", "ddp_broadcast_buffers", "ddp_static_graph", "ddp_backend", "ddp_timeout", "debug",
    "attn_implementation",
})
_SECRET_FIELDS = frozenset({"token", "hub_token"})  # never written, whatever the value
_HASHED_FILE_FIELDS = ("train_file",)  # compared by content, not by path


class TrainingPlanError(ValueError):
    """The arguments would train on nothing (or nonsense): refused before any work."""


class RunMismatchError(ValueError):
    """A rerun would resume a checkpoint written with other run-defining arguments."""


class RunLockedError(RuntimeError):
    """Another live run writes to the same output folder."""


class OutputDirNotWritableError(OSError):
    """--output_dir cannot hold the run's files (not a folder, unwritable, ...)."""


class FinalSaveError(OSError):
    """The finished model could not be written to --output_dir (it was kept elsewhere: see the message)."""


class InputFileError(ValueError):
    """An input file named by a flag cannot be read (missing, a folder, no permission)."""


# --------------------------------------------------------------------------------------------
# Training on nothing
# --------------------------------------------------------------------------------------------
def check_training_plan(training_args: Any) -> None:
    """Refuse learning rates and step/epoch counts that would train nothing, before any work.

    ``max_steps`` > 0 wins over epochs (the Trainer's rule); a negative ``max_steps`` means unset.
    """
    lr = training_args.learning_rate
    if not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        what = "0 leaves the weights where they started" if lr == 0 else f"{lr!r} is not a usable step size"
        raise TrainingPlanError(
            f"--learning_rate {lr}: {what}. Give a positive learning rate, e.g. --learning_rate 5e-5 for "
            "fine-tuning or 5e-4 for pretraining."
        )
    if training_args.max_steps == 0:
        raise TrainingPlanError(
            "--max_steps 0 would export a model trained on nothing. Give a positive --max_steps, or leave it "
            "unset (-1) to train for --num_train_epochs epochs."
        )
    epochs = training_args.num_train_epochs
    if training_args.max_steps < 0 and (not math.isfinite(epochs) or epochs <= 0):
        raise TrainingPlanError(
            f"--num_train_epochs {epochs} would export a model trained on nothing (and --max_steps is not set). "
            "Give a positive --num_train_epochs (e.g. 3) or a positive --max_steps."
        )
    minutes = getattr(training_args, "max_train_minutes", None)
    if minutes is not None and not minutes > 0:
        raise TrainingPlanError(f"--max_train_minutes {minutes} leaves no time to train: give a positive number.")


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def check_corpus_has_text(dataset: Any, column: str, origin: str, scan_limit: int = 100_000) -> None:
    """Refuse a pretraining corpus whose every document is empty or whitespace.

    Stops at the first document with text. A stream is read up to ``scan_limit`` documents (a longer
    blank head is only warned about: the rest of the stream cannot be checked without reading it all).
    """
    from .data import DataValidationError

    names = getattr(dataset, "column_names", None)
    if names is not None and column not in names:
        return  # the recipe's own column check names the missing column
    if hasattr(dataset, "iter") and hasattr(dataset, "__len__"):
        for batch in dataset.iter(batch_size=1000):
            if not all(_blank(text) for text in batch[column]):
                return
    else:
        for seen, example in enumerate(dataset):
            if not _blank(example.get(column)):
                return
            if seen + 1 >= scan_limit:
                logger.warning("The first %d documents of %s are all blank.", scan_limit, origin)
                return
    raise DataValidationError(
        f"The training corpus {origin} holds no text: every document in column '{column}' (--text_column) is "
        "empty or blank, so pretraining would learn nothing. Check the file and --text_column."
    )


def check_training_targets(spec: Any, raw: Mapping[str, Any], data_args: Any) -> None:
    """Refuse a training split whose every target is empty (blank summaries or translations, no QA answer,
    only 'O' role tags): the model would learn to output nothing. Some empty targets are only counted.

    ``spec`` is the task's :class:`~recipes.core.registry.TaskSpec`; its ``training_targets`` reads the targets.
    """
    from .data import DataValidationError, locate

    ds = raw.get("train") if hasattr(raw, "get") else None
    if ds is None or not hasattr(ds, "__len__") or len(ds) == 0 or spec.training_targets is None:
        return
    found = spec.training_targets(ds, data_args)
    if found is None:
        return
    targets, flag = found
    empty = [row for row, value in enumerate(targets) if _blank(value)]
    if len(empty) == len(ds):
        source = (getattr(raw, "sources", None) or {}).get("train")
        origin = source.origin if source is not None else "the train split"
        raise DataValidationError(
            f"Every training target in {origin} is empty ({flag}, {len(ds)} rows): the model would learn to "
            "output nothing. Check the column/language flags and the data."
        )
    if empty and spec.warn_empty_targets:  # (unanswerable QA questions are normal: SQuAD v2)
        logger.warning(
            "%d of %d training targets (%s) are empty, e.g. %s.",
            len(empty), len(ds), flag, locate(raw, "train", empty[0]),
        )


# --------------------------------------------------------------------------------------------
# Input files, datasets cache, output folder
# --------------------------------------------------------------------------------------------
def _check_readable(path: Path, flag: str, want: str) -> None:
    """``want``: 'file', 'folder' or 'any'."""
    try:
        path.stat()
    except PermissionError:
        raise InputFileError(
            f"{flag} {path}: permission denied on a folder of the path. Make the folders on the way readable "
            f"(`chmod a+rx` on them) or run as their owner."
        ) from None
    except OSError:
        pass  # a missing path is reported below
    if not path.exists():
        raise InputFileError(f"{flag} {path} does not exist. Check the path.")
    if want == "file" and path.is_dir():
        raise InputFileError(f"{flag} {path} is a folder, but a file is expected. Pass the file inside it.")
    if want == "folder" and not path.is_dir():
        raise InputFileError(f"{flag} {path} is a file, but a model/tokenizer folder is expected. Pass its folder.")
    targets = [path] if path.is_file() else [p for p in path.iterdir() if p.is_file()]
    if path.is_dir() and not os.access(path, os.R_OK | os.X_OK):
        raise InputFileError(
            f"{flag} {path}: permission denied (cannot list the folder). Fix with `chmod a+rx {path}`."
        )
    for target in targets:
        try:
            with open(target, "rb") as handle:
                handle.read(1)
        except PermissionError:
            raise InputFileError(
                f"{flag} {target}: permission denied. Make it readable (`chmod a+r {target}`) or run as its owner."
            ) from None
        except OSError as err:
            raise InputFileError(f"{flag} {target} cannot be read ({err.strerror}).") from None


def check_input_files(model_args: Any = None, data_args: Any = None) -> None:
    """Every local path named by a flag exists and can be read, with the flag and the fix in the error.

    Hub ids (a name that is not a local path) are left to the loaders.
    """
    wanted: list[tuple[Optional[str], str, str]] = []
    if data_args is not None:
        for name in ("train_file", "validation_file", "test_file"):
            wanted.append((getattr(data_args, name, None), f"--{name}", "file"))
    if model_args is not None:
        wanted.append((getattr(model_args, "init_embeddings", None), "--init_embeddings", "file"))
        for name in ("model_name_or_path", "tokenizer_name"):
            value = getattr(model_args, name, None)
            if value and os.path.exists(value):
                wanted.append((value, f"--{name}", "folder"))
        config = getattr(model_args, "config_name", None)
        if config and os.path.exists(config):
            wanted.append((config, "--config_name", "any"))
    for value, flag, want in wanted:
        if value:
            _check_readable(Path(value), flag, want)


def _probe_write(folder: Path) -> None:
    """Create the folder if needed and write (then delete) a small file in it; raises OSError."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".forge-write-test-") as handle:
        handle.write(b"ok")
        handle.flush()


def check_datasets_cache_writable(cache_dir: Optional[str] = None) -> None:
    """The datasets cache (``--cache_dir`` or ``HF_DATASETS_CACHE``) must take writes; say so if not.

    datasets writes Arrow files there for every local file it loads; its own error for a read-only
    cache looks like a problem with the data.
    """
    import datasets

    folder = Path(cache_dir or datasets.config.HF_DATASETS_CACHE)
    try:
        _probe_write(folder)
    except OSError as err:
        source = "--cache_dir" if cache_dir else "HF_DATASETS_CACHE"
        raise OutputDirNotWritableError(
            err.errno, f"The datasets cache {folder} ({source}) is not writable ({err.strerror}); the data itself may "
            f"be fine. Point {source} to a writable folder (e.g. `export HF_DATASETS_CACHE=/tmp/hf-datasets` or "
            "--cache_dir), or make that folder writable."
        ) from None


_WRITE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR}


def raise_if_cache_write_failure(err: BaseException, cache_dir: Optional[str] = None) -> None:
    """Re-raise a failure to write the datasets cache (found anywhere in ``err``'s chain) as the cache
    problem it is, instead of the data problem the loader's message suggests. Returns otherwise."""
    import datasets

    folder = str(Path(cache_dir or datasets.config.HF_DATASETS_CACHE).resolve())
    seen: BaseException | None = err
    while seen is not None:
        name = getattr(seen, "filename", None)
        if isinstance(seen, OSError) and seen.errno in _WRITE_ERRNOS and name and str(name).startswith(folder):
            source = "--cache_dir" if cache_dir else "HF_DATASETS_CACHE"
            raise OutputDirNotWritableError(
                seen.errno, f"Writing the datasets cache {folder} ({source}) failed ({seen.strerror}: {name}); the "
                f"data itself may be fine. Free space there, or point {source} to a writable folder."
            ) from err
        seen = seen.__cause__ or seen.__context__


def prepare_output_dir(output_dir: Any) -> Path:
    """Refuse an output folder that cannot hold the run (``""``, a file, unwritable) before any training."""
    if output_dir is None or not str(output_dir).strip():
        raise OutputDirNotWritableError(errno.EINVAL, "--output_dir is empty: give the folder to write the model to.")
    folder = Path(output_dir)
    if folder.exists() and not folder.is_dir():
        raise OutputDirNotWritableError(
            errno.ENOTDIR, f"--output_dir {folder} is a file, not a folder: choose another --output_dir."
        )
    try:
        _probe_write(folder)
    except OSError as err:
        raise OutputDirNotWritableError(
            err.errno, f"--output_dir {folder} is not writable ({err.strerror}): choose a folder you can write to "
            "(check its permissions, free space and that no part of the path is a file)."
        ) from None
    return folder


# --------------------------------------------------------------------------------------------
# One run per output folder
# --------------------------------------------------------------------------------------------
_HELD_LOCKS: set[Path] = set()


def _process_start(pid: int) -> Optional[str]:
    """The start time of ``pid`` (Linux /proc), to tell a live owner from a recycled pid; None elsewhere."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int, started: Optional[str]) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return started is None or _process_start(pid) in (None, started)


def acquire_run_lock(output_dir: str | os.PathLike) -> Path:
    """Take ``output_dir/.forge-run.lock`` for this process, or raise :class:`RunLockedError`.

    The lock holds pid, host and process start time. A lock left by a dead process on this host is taken
    over with a warning; a lock from another host cannot be checked and is refused (the message says how
    to remove it). The lock is released by :func:`release_run_lock` and at interpreter exit.
    """
    path = Path(output_dir) / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": _process_start(os.getpid()),
          "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                owner = {}
            pid, host = owner.get("pid"), owner.get("host")
            if pid == me["pid"] and host == me["host"]:
                break  # this process (an earlier run in the same interpreter) already holds it
            if host == me["host"] and isinstance(pid, int) and not _pid_alive(pid, owner.get("started")):
                logger.warning("Taking over the stale lock %s of process %s (no longer running).", path, pid)
                path.unlink(missing_ok=True)
                continue
            if not owner:
                raise RunLockedError(f"{path} exists but is unreadable; if no run writes to {output_dir}, delete it.")
            raise RunLockedError(
                f"Another run (pid {pid} on {host}, since {owner.get('since', '?')}) is writing to {output_dir}. "
                "Wait for it to finish or choose another --output_dir. If that run is gone (e.g. another machine "
                f"crashed), delete {path}."
            )
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(me, handle)
        break
    else:
        raise RunLockedError(f"Could not take the lock {path}; another run is starting in {output_dir}.")
    if path not in _HELD_LOCKS:
        _HELD_LOCKS.add(path)
        atexit.register(release_run_lock, output_dir)
    return path


def release_run_lock(output_dir: str | os.PathLike) -> None:
    """Remove the lock of ``output_dir`` if this process holds it."""
    path = Path(output_dir) / LOCK_NAME
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)
    _HELD_LOCKS.discard(path)


# --------------------------------------------------------------------------------------------
# Resume only the same run
# --------------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """A JSON-comparable form of an argument value."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def _sha256(path: str) -> Optional[str]:
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()
    except OSError:
        return None


def run_record(*arg_objects: Any, world_size: int = 1) -> dict[str, Any]:
    """The run-defining arguments of ``arg_objects`` (the parsed dataclasses), as JSON-ready values.

    Secrets (by flag name, :func:`recipes.core.safety.is_secret_name`) are never included; the training
    file is recorded by content (``train_file.sha256``).
    """
    from .safety import is_secret_name

    record: dict[str, Any] = {"world_size": world_size}
    for obj in arg_objects:
        if obj is None:
            continue
        for f in dataclasses.fields(obj):
            if not f.init or f.name in MAY_CHANGE_ON_RESUME or f.name in _SECRET_FIELDS or is_secret_name(f.name):
                continue
            value = getattr(obj, f.name, None)
            if f.name in _HASHED_FILE_FIELDS:
                record[f"{f.name}.sha256"] = _sha256(value) if value else None
                continue
            record[f.name] = _plain(value)
    return record


def check_same_run(checkpoint: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Raise :class:`RunMismatchError` when ``checkpoint`` was written by a run with other arguments."""
    path = Path(checkpoint) / RUN_RECORD_NAME
    if not path.is_file():
        logger.warning(
            "%s has no %s (written by an older Forge): cannot check that the resumed run has the same arguments.",
            checkpoint, RUN_RECORD_NAME,
        )
        return
    saved = json.loads(path.read_text(encoding="utf-8"))
    differ = []
    for key in sorted(set(saved) | set(record)):
        if key in MAY_CHANGE_ON_RESUME or key.split(".")[0] in MAY_CHANGE_ON_RESUME:
            continue
        if key in saved and key in record and saved[key] != record[key]:
            what = "content changed" if key.endswith(".sha256") else f"{saved[key]!r} -> {record[key]!r}"
            differ.append(f"--{key.removesuffix('.sha256')} ({what})")
    if differ:
        raise RunMismatchError(
            f"This rerun would resume {checkpoint}, but it differs from that run in: {', '.join(differ)}. "
            "Resuming would mix two runs into one model. Rerun with the original values to continue it, pass "
            "--overwrite_output_dir to start a fresh run in this folder, or choose another --output_dir "
            "(to start a new run from these weights, pass the checkpoint as --model_name_or_path)."
        )


class RunRecordCallback(TrainerCallback):
    """Write the run record that ``start_run`` left on the arguments into each ``checkpoint-<step>``."""

    def on_save(self, args, state, control, **kwargs):
        record = getattr(args, RUN_RECORD_ATTR, None)
        if record is None or not state.is_world_process_zero:
            return
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if checkpoint.is_dir():
            tmp = checkpoint / f".{RUN_RECORD_NAME}.tmp"
            tmp.write_text(json.dumps(record, indent=2, sort_keys=True), encoding="utf-8")
            os.replace(tmp, checkpoint / RUN_RECORD_NAME)


def checkpoint_is_final(checkpoint: str | os.PathLike, honour_stop: bool = True) -> bool:
    """True when the run that wrote ``checkpoint`` had finished training there: its step count reached the
    run's max steps, or (with ``honour_stop``) a callback such as early stopping or the time budget had
    ended training. An explicit ``--resume_from_checkpoint`` continues such a stopped run instead, so the
    recipes pass ``honour_stop=False`` then."""
    try:
        state = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    max_steps = state.get("max_steps") or 0
    if max_steps > 0 and state.get("global_step", 0) >= max_steps:
        return True
    control = (state.get("stateful_callbacks") or {}).get("TrainerControl") or {}
    return honour_stop and bool((control.get("args") or {}).get("should_training_stop"))


def finish_from_checkpoint(trainer: Any, checkpoint: str) -> dict[str, float]:
    """Load the final checkpoint (or the best one, with --load_best_model_at_end) into ``trainer``
    without training, and return the train metrics of that run's log.

    Uses the Trainer's own loaders (``_load_from_checkpoint``, ``_load_best_model``): transformers has no
    public call that loads a checkpoint's weights without starting a training loop.
    """
    from transformers import TrainerState

    logger.info("%s is the run's final checkpoint: finishing without training another step.", checkpoint)
    trainer.state = TrainerState.load_from_json(os.path.join(checkpoint, "trainer_state.json"))
    trainer._load_from_checkpoint(checkpoint)
    best = trainer.state.best_model_checkpoint
    if trainer.args.load_best_model_at_end and best and os.path.isdir(best):
        trainer._load_best_model()
    if hasattr(trainer, "_apply_average"):  # an --ema_decay run ends with its moving average (recipes/core/trainers.py)
        trainer._apply_average(checkpoint)
    last = next((h for h in reversed(trainer.state.log_history) if "train_loss" in h), {})
    metrics = {k: v for k, v in last.items() if k.startswith("train_") or k in ("total_flos",)}
    metrics["epoch"] = trainer.state.epoch or 0.0
    return metrics


# --------------------------------------------------------------------------------------------
# Final save: never lose a finished run
# --------------------------------------------------------------------------------------------
def save_or_rescue(
    save: Callable[..., Any], model: Any, tokenizer: Any, output_dir: str | os.PathLike, **kwargs: Any
) -> None:
    """``save(model, tokenizer, output_dir, **kwargs)``; when that fails with an OSError (disk full,
    read-only), save the same folder under a rescue path and raise :class:`FinalSaveError` naming it."""
    try:
        save(model, tokenizer, output_dir, **kwargs)
        return
    except OSError as err:
        failure = err
    name = Path(output_dir).name or "model"
    kept = None
    for base in (tempfile.gettempdir(), Path.home(), Path.cwd()):
        try:
            target = Path(tempfile.mkdtemp(prefix=f"forge-rescued-{name}-", dir=base))
            save(model, tokenizer, target, **kwargs)
            kept = target
            break
        except OSError:
            continue
    reason = failure.strerror or str(failure)
    if kept is not None:
        raise FinalSaveError(
            failure.errno, f"Could not write the finished model to {output_dir} ({reason}). The trained model was "
            f"saved to {kept} instead: free space or fix permissions, then move it into place "
            f"(`mv {kept}/* {output_dir}/`)."
        ) from failure
    raise FinalSaveError(
        failure.errno, f"Could not write the finished model to {output_dir} ({reason}), nor to a rescue folder. "
        f"The newest checkpoint in {output_dir} holds the last saved weights; free space and rerun the same "
        "command to finish from it."
    ) from failure


# --------------------------------------------------------------------------------------------
# Config files: numbers written the natural way
# --------------------------------------------------------------------------------------------
def _accepts(hint: Any) -> set[type]:
    """The plain types a field annotation admits (Optional/Union unpacked)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        out: set[type] = set()
        for arg in typing.get_args(hint):
            out |= _accepts(arg)
        return out
    if origin is not None:
        return {origin}
    if isinstance(hint, type):
        return {hint}
    return set()


def coerce_config_values(dataclass_types: Iterable[type], data: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Convert config-file values to their fields' types: ``learning_rate: 1e-3`` (a string to PyYAML,
    which follows YAML 1.1) becomes 0.001; ``"8"`` for an int field becomes 8; ``"true"`` for a bool
    field becomes True. A value that is not a number where one is needed is an error naming the key."""
    accepted: dict[str, set[type]] = {}
    for dtype in dataclass_types:
        hints = typing.get_type_hints(dtype)
        for f in dataclasses.fields(dtype):
            accepted.setdefault(f.name, _accepts(hints.get(f.name, f.type)))
    out = dict(data)
    for key, value in data.items():
        kinds = accepted.get(key)
        if not kinds or str in kinds or isinstance(value, bool):
            continue
        numeric = kinds & {int, float}
        if isinstance(value, str) and bool in kinds and value.strip().lower() in ("true", "false", "yes", "no"):
            out[key] = value.strip().lower() in ("true", "yes")
            continue
        if not numeric or not isinstance(value, (str, float)) or (isinstance(value, float) and float in numeric):
            continue  # numbers already of an accepted type stay as they are
        try:
            number = float(value)
        except ValueError:
            raise ValueError(
                f"{source}: '{key}' must be a number, got {value!r}. Write it as a number, e.g. {key}: 3 or 1e-3."
            ) from None
        if int in numeric and number.is_integer() and (float not in numeric or re.fullmatch(r"\s*[+-]?\d+\s*", value)):
            out[key] = int(number)
        elif float in numeric:
            out[key] = number
        elif number.is_integer():
            out[key] = int(number)
        else:
            raise ValueError(f"{source}: '{key}' must be a whole number, got {value!r}.")
    return out


# --------------------------------------------------------------------------------------------
# Prediction-only runs: labels are optional
# --------------------------------------------------------------------------------------------
def drop_unusable_prediction_labels(
    raw: Any, column: str, is_valid: Callable[[Any], bool], flag: str, split: str = "test"
) -> bool:
    """Predictions need no labels: when the ``split`` (--test_file) has rows whose label is missing or
    unknown to the model, predict it without scoring (the label column is dropped, with a warning
    naming the rows) instead of refusing. Returns True when the column was dropped."""
    from .data import locate

    if split not in raw or column not in (raw[split].column_names or []):
        return False
    bad = [row for row, value in enumerate(raw[split][column]) if value is None or not is_valid(value)]
    if not bad:
        return False
    where = "; ".join(locate(raw, split, row) for row in bad[:5])
    logger.warning(
        "%d row(s) of the %s split have no label the model knows (--%s), e.g. %s: predicting that split without "
        "scoring it (no predict_* metrics). Fix those labels to get scores.", len(bad), split, flag, where,
    )
    raw[split] = raw[split].remove_columns(column)
    return True


# --------------------------------------------------------------------------------------------
# Fine-tuning a post-norm pretrained start
# --------------------------------------------------------------------------------------------
# The highest fine-tuning learning rate measured to keep a post-norm (``norm_position="post"``) pretrained start
# (README, "Does pretraining pay for itself?"): at 1e-3, the from-scratch recipes' rate, SRL from a post-norm
# pretraining tagged every token O (session 7) and translation from one ended at 3.1 BLEU (session 22); at 3e-4 both
# trained (translation at 5e-4 as well: 37.7). Pre-norm starts fine-tuned at 1e-3 in the same measurements.
POST_NORM_START_MAX_LR = 5e-4


def warn_post_norm_start(model: Any, model_args: Any, training_args: Any) -> bool:
    """Warn when a post-norm Forge model loaded from ``--model_name_or_path`` is fine-tuned above
    :data:`POST_NORM_START_MAX_LR`, and say which flag to give. Returns True when it warned."""
    config = getattr(model, "config", None)
    if not getattr(model_args, "model_name_or_path", None) or getattr(config, "norm_position", None) != "post":
        return False
    lr = training_args.learning_rate
    if lr <= POST_NORM_START_MAX_LR:
        return False
    logger.warning(
        "Fine-tuning a post-norm pretrained model (%s, norm_position=post) at --learning_rate %g: measured here, "
        "such starts lose what they learned and stall at the from-scratch recipes' 1e-3 (SRL tagged every token O, "
        "translation ended at 3.1 BLEU) and fine-tune at 3e-4. Give --learning_rate 3e-4 (or lower) unless this "
        "model was trained from scratch by this recipe and you continue it.",
        model_args.model_name_or_path, lr,
    )
    return True
