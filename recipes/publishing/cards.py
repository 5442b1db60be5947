"""Model cards generated from a run's measured results.

``write_model_card`` renders ``model_cards/template.md`` with the task's text from the registry (title,
pipeline tag, usage snippet) with huggingface_hub's ``ModelCard``: YAML metadata
(license, language, datasets, pipeline_tag, tags, base_model) with a ``model-index`` built from the metrics
the run measured, the hyperparameters and budget, intended use, limitations, a usage snippet that runs as
written, and the loss curve. Nothing that looks like a Hugging Face token ever reaches the card.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

from ..core.safety import honour_umask

logger = logging.getLogger(__name__)

CARD_NAME = "README.md"

# Keys of Trainer.evaluate() output that describe the run, not the model's quality.
_NON_METRIC_SUFFIXES = ("runtime", "samples_per_second", "steps_per_second", "epoch", "total_flos", "jit_compilation_time")
_METRIC_PREFIXES = ("eval_", "test_", "predict_")

# Secrets: Hub user/org tokens and the values of the usual token variables.
_TOKEN_PATTERN = re.compile(r"hf_[A-Za-z0-9]{6,}")
_TOKEN_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_TOKEN")
_SECRET_KEY_PATTERN = re.compile(r"(^|_)(token|password|secret|api_key)$", re.IGNORECASE)


def known_token_values() -> list[str]:
    """Token values this process could use (environment, login cache), never printed; for redaction."""
    values = [os.environ[name] for name in _TOKEN_ENV_VARS if os.environ.get(name)]
    try:
        from huggingface_hub import get_token

        token = get_token()
        if token:
            values.append(token)
    except Exception:  # no login cache or an old huggingface_hub: nothing more to redact
        pass
    return [v for v in values if len(v) >= 4]


def redact_secrets(text: str, extra_secrets: list[str] | None = None) -> str:
    """Replace Hugging Face tokens (by pattern and by known value) in ``text`` with ``***``."""
    for secret in sorted(set(known_token_values() + list(extra_secrets or [])), key=len, reverse=True):
        text = text.replace(secret, "***")
    return _TOKEN_PATTERN.sub("***", text)


def clean_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """Keep the quality metrics of a Trainer results dict: drop timings/epoch, strip ``eval_``-style prefixes.

    ``{"eval_rouge1": 41.2, "eval_runtime": 3.1, "epoch": 2.0}`` -> ``{"rouge1": 41.2}``. Non-numeric and
    non-finite values are dropped with a warning (the Hub's model-index wants numbers).
    """
    cleaned: dict[str, float] = {}
    for key, value in (metrics or {}).items():
        name = key
        for prefix in _METRIC_PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix) :]
                break
        if name.endswith(_NON_METRIC_SUFFIXES):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            logger.warning("Model card: skipping metric %s=%r (not a finite number).", key, value)
            continue
        cleaned[name] = value
    return cleaned


def _spec(task: str | None) -> Any:
    """The registry spec of ``task`` (None: pretraining), or None for a task the registry does not know."""
    from ..core.registry import get_task

    try:
        return get_task(task or "pretraining")
    except ValueError:
        return None


def pipeline_tag_for(task: str | None) -> str | None:
    """The Hub pipeline tag of a Forge task (SRL is token classification on the Hub)."""
    spec = _spec(task)
    return spec.pipeline_tag if spec else None


def task_title(task: str | None) -> str:
    """The card's name for the task ("Extractive question answering")."""
    spec = _spec(task)
    return spec.title if spec else (task or "pretraining")


def default_usage_snippet(task: str | None, model_id: str) -> str:
    """A Python snippet that loads ``model_id`` for ``task`` and runs it as written (trust_remote_code).

    The task's registry entry holds the snippet; pretrained checkpoints (and unknown tasks) get the one that
    uses the model classes directly.
    """
    spec = _spec(task)
    if spec is None or not spec.usage:
        spec = _spec("pretraining")
    return spec.usage.replace("{model_id}", model_id)


def describe_base_model(base_model: str | os.PathLike | None) -> tuple[str | None, str]:
    """``(Hub id for the card metadata, text for "Fine-tuned from")`` of the model a run started from.

    A Hub repo id is both. A local folder (e.g. the main job's ``outputs/main_job/pretrained``) has no
    Hub id, so the metadata's ``base_model`` stays empty (the Hub only accepts repo ids there) and the text
    names the folder's own card title and its path, so a reader knows which model the weights came from.
    None means trained from scratch.
    """
    if base_model is None or str(base_model) == "":
        return None, "none (trained from scratch)"
    folder = Path(base_model)
    if not folder.is_dir():
        return str(base_model), f"[{base_model}](https://huggingface.co/{base_model})"
    title = None
    card_path = folder / CARD_NAME
    if card_path.is_file():
        text = card_path.read_text(encoding="utf-8")
        heading = re.search(r"^# (.+)$", text, re.MULTILINE)
        title = heading.group(1).strip() if heading else None
    title = title or folder.resolve().name
    return None, f"{title} (local folder `{base_model}`)"


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _framework_versions() -> list[tuple[str, str]]:
    versions = []
    for name in ("transformers", "torch", "tokenizers", "huggingface_hub", "datasets"):
        try:
            module = __import__(name)
            versions.append((name, getattr(module, "__version__", "unknown")))
        except ImportError:
            continue
    return versions


def _architecture(output_dir: Path) -> str:
    try:
        import json

        with open(output_dir / "config.json", encoding="utf-8") as f:
            return ", ".join(json.load(f).get("architectures") or []) or "Forge"
    except (OSError, ValueError):
        return "Forge"


def write_model_card(
    output_dir: str | os.PathLike,
    *,
    model_name: str,
    task: str | None,
    metrics: Mapping[str, Any] | None,
    pipeline_tag: str | None = None,
    base_model: str | None = None,
    datasets: str | list[str] | None = None,
    language: str | list[str] | None = "en",
    license: str = "apache-2.0",
    dataset_name: str | None = None,
    dataset_split: str | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    training_budget: str = "not recorded",
    command: str | None = None,
    intended_use: str | None = None,
    limitations: str | None = None,
    usage_snippet: str | None = None,
    loss_curve: str | os.PathLike | None = None,
    repo_id: str | None = None,
    summary: str | None = None,
    tags: list[str] | None = None,
    extra_sections: list[tuple[str, str]] | None = None,
) -> Path:
    """Write ``output_dir/README.md``: a model card with YAML metadata and a ``model-index`` of ``metrics``.

    Args:
        output_dir: the saved model folder (see ``save_hub_folder``).
        model_name: the model's display name (also the ``model-index`` name).
        task: the Forge task (a registry name or alias, e.g. "summarization", "qa", "pretraining"); chooses
            the default pipeline tag, title and usage snippet.
        metrics: the run's evaluation results, metric name -> value (a Trainer results dict works:
            see ``clean_metrics``). They become the ``model-index`` results.
        pipeline_tag: Hub pipeline tag; defaults from ``task``.
        base_model: the checkpoint fine-tuned from: a Hub id, or a local folder (named in the card by its
            title and path; see ``describe_base_model``); None for a model trained from scratch.
        datasets: Hub dataset id(s) for the metadata; None for local data.
        dataset_name: human-readable name of the evaluation data (defaults to the first dataset).
        dataset_split: the split the metrics were measured on (e.g. "validation").
        hyperparameters: training settings to list (keys that look like secrets are left out).
        training_budget: e.g. "2 epochs, 41 min on 2 CPU cores".
        command: the command that reproduces the run (tokens are redacted).
        intended_use, limitations: free text; sensible defaults per task.
        usage_snippet: Python code; the default per task runs as written with ``trust_remote_code``.
        loss_curve: path to the loss-curve image; copied into ``output_dir`` if it is elsewhere.
        repo_id: Hub id the card's snippet should load; defaults to ``output_dir`` (hub_upload.py
            rewrites it to the target repo when uploading).
        summary: one paragraph at the top.
        tags: extra tags.
        extra_sections: ``(title, markdown)`` sections appended to the card (e.g. the differential-privacy budget or
            the personal-data scrubbing report of ``privacy``).

    Returns:
        The path of the written README.md.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from ..core.layout import model_cards

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    pipeline_tag = pipeline_tag or pipeline_tag_for(task)
    datasets_list = [datasets] if isinstance(datasets, str) else list(datasets or [])
    dataset_name = dataset_name or (datasets_list[0] if datasets_list else "held-out data")
    model_id = repo_id or str(output_dir)
    cleaned = clean_metrics(metrics)
    from_scratch = base_model is None or str(base_model) == ""
    base_model, base_model_text = describe_base_model(base_model)

    eval_results = [
        EvalResult(
            task_type=pipeline_tag or "text2text-generation",
            task_name=task_title(task),
            dataset_type=datasets_list[0] if datasets_list else re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset_name),
            dataset_name=dataset_name,
            dataset_split=dataset_split,
            metric_type=name,
            metric_name=name,
            metric_value=value,
        )
        for name, value in cleaned.items()
    ]
    all_tags = ["forge", "custom_code", "encoder-decoder"]
    if task and task not in all_tags:
        all_tags.append(task)
    all_tags += [t for t in (tags or []) if t not in all_tags]
    card_data = ModelCardData(
        model_name=model_name,
        language=language,
        license=license,
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        tags=all_tags,
        datasets=datasets_list or None,
        base_model=base_model,
        metrics=list(cleaned) or None,
        eval_results=eval_results or None,
    )

    curve_ref = None
    if loss_curve is not None:
        curve = Path(loss_curve)
        if not curve.is_file():
            raise FileNotFoundError(f"write_model_card: loss_curve {curve} does not exist.")
        if curve.resolve().parent != output_dir.resolve():
            shutil.copyfile(curve, output_dir / curve.name)
        curve_ref = curve.name

    hyper_rows = [
        (name, _format_value(value))
        for name, value in (hyperparameters or {}).items()
        if not _SECRET_KEY_PATTERN.search(str(name))
    ]
    title = task_title(task)
    card = ModelCard.from_template(
        card_data,
        template_str=model_cards.load_template(),
        model_name=model_name,
        summary=summary or f"A Forge encoder-decoder model for {title.lower()}, trained with the Forge recipes.",
        architecture=_architecture(output_dir),
        task_title=title,
        language_text=", ".join([language] if isinstance(language, str) else (language or [])) or "not specified",
        license=license,
        base_model_text=base_model_text,
        dataset_text=", ".join(datasets_list) or dataset_name,
        dataset_name=dataset_name + (f" ({dataset_split} split)" if dataset_split else ""),
        usage_snippet=usage_snippet or default_usage_snippet(task, model_id),
        intended_use=intended_use
        or f"{title} on text like the training data ({dataset_name}). A small research model: evaluate it on "
        "your own data before relying on it.",
        limitations=limitations
        or f"Trained on a limited budget{' from scratch' if from_scratch else ''}: expect errors, especially on text "
        "unlike the training data. "
        "The model can reproduce biases of its training data and must not be used for decisions about people.",
        metrics_rows=[(name, _format_value(value)) for name, value in cleaned.items()],
        hyperparameter_rows=hyper_rows,
        training_budget=training_budget,
        command=command,
        loss_curve=curve_ref,
        framework_versions=_framework_versions(),
    )
    text = str(card)
    for section_title, body in extra_sections or []:
        text = text.rstrip("\n") + f"\n\n## {section_title}\n\n{body.strip()}\n"
    redacted = redact_secrets(text)
    if redacted != text:
        logger.warning("Model card: a Hugging Face token was found in the card inputs and redacted.")
    path = output_dir / CARD_NAME
    fd, tmp = tempfile.mkstemp(prefix=f".{CARD_NAME}.", suffix=".tmp", dir=output_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(redacted)
        honour_umask(tmp)  # mkstemp made it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.info("Wrote the model card %s", path)
    return path


__all__ = [
    "CARD_NAME",
    "clean_metrics",
    "default_usage_snippet",
    "describe_base_model",
    "pipeline_tag_for",
    "task_title",
    "known_token_values",
    "redact_secrets",
    "write_model_card",
]
