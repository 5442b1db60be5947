"""The BART control: train transformers' own BART, of the same shape as a Forge config, through the same recipe.

``--architecture bart`` makes every recipe build ``BartForConditionalGeneration`` / ``BartForSequenceClassification``
/ ``BartForQuestionAnswering`` / :class:`~recipes.core.bart_token_classification.BartForTokenClassification`
instead of the Forge head, with everything else unchanged (data path, tokenizer, Trainer settings, budget). A
result that is worse for Forge than for BART at equal budget points at Forge; equal results point at the budget.

One function maps the shape (:func:`bart_config_from_forge`); the remaining differences are BART's design, not
the shape: post-norm layers with ``layernorm_embedding`` (Forge: pre-norm with a final norm unless
``norm_position="post"``, which is BART's layout), learned positions
with 2 offset rows (Forge default: sinusoidal, no parameters), biases on every projection, and heads for
sequence classification and QA that run the decoder too (Forge's run the encoder alone).

A saved BART folder holds plain BART weights and config, the Forge tokenizer (with its two code files, so it
loads with ``trust_remote_code``), ``pipeline_forge.py`` for the tasks transformers 5 removed, and for SRL the
token-classification head's code file.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    BartForQuestionAnswering,
    BartForSequenceClassification,
    PreTrainedConfig,
)

from .bart_token_classification import BartForTokenClassification

logger = logging.getLogger(__name__)

ARCHITECTURES: tuple[str, ...] = ("forge", "bart")

# Auto class name -> the BART class that plays the Forge head's role.
BART_HEADS: dict[str, type] = {
    "AutoModelForSeq2SeqLM": BartForConditionalGeneration,
    "AutoModelForSequenceClassification": BartForSequenceClassification,
    "AutoModelForQuestionAnswering": BartForQuestionAnswering,
    "AutoModelForTokenClassification": BartForTokenClassification,
}

# ForgeConfig fields copied one to one (BART has the same names and meaning).
_SHARED_FIELDS: tuple[str, ...] = (
    "vocab_size", "d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads",
    "decoder_attention_heads", "encoder_ffn_dim", "decoder_ffn_dim", "activation_function",
    "max_position_embeddings", "dropout", "attention_dropout", "activation_dropout", "classifier_dropout",
    "init_std", "scale_embedding", "pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id",
    "tie_word_embeddings", "use_cache",
)
# Label fields every PreTrainedConfig carries.
_LABEL_FIELDS: tuple[str, ...] = ("id2label", "label2id", "problem_type")


def bart_config_from_forge(config: PreTrainedConfig) -> BartConfig:
    """A ``BartConfig`` of the same shape and training settings as the Forge ``config``.

    Raises:
        ValueError: a Forge variant BART cannot express (gated feed-forward, RMSNorm, rotary positions, the head
            options), so the two would not have the same shape.
    """
    unsupported = {
        "ffn_type": ("mlp", "BART's feed-forward is fc2(act(fc1(x))); a gated one has a third matrix"),
        "norm_type": ("layernorm", "BART uses LayerNorm"),
        "position_embedding_type": (("sinusoidal", "learned"), "BART adds learned absolute positions"),
        # Forge's head options: BART's heads have no such parts
        "qa_lexical_match": (False, "BART's QA head has no vector for the tokens the question and context share"),
        "classifier_predicate_context": (False, "BART's token classifier is one linear layer"),
        "classifier_pooling": ("mean", "BART's sequence classifier reads the last </s> state"),
        "copy_attention": (False, "BART's LM head is one linear layer over the vocabulary, with no copy distribution"),
    }
    for name, (allowed, why) in unsupported.items():
        value = getattr(config, name, None)
        if value is not None and value not in (allowed if isinstance(allowed, tuple) else (allowed,)):
            raise ValueError(
                f"--architecture bart cannot mirror `{name}={value}` ({why}); drop that override for the BART "
                f"control, or compare with --architecture forge only."
            )
    kwargs = {name: getattr(config, name) for name in _SHARED_FIELDS}
    kwargs.update({name: getattr(config, name) for name in _LABEL_FIELDS if getattr(config, name, None) is not None})
    # Generation as Forge's: no forced end token (the recipes set beams, lengths and n-gram blocking themselves).
    kwargs["forced_eos_token_id"] = None
    kwargs["forced_bos_token_id"] = None
    return BartConfig(**kwargs)


def bart_head_for(auto_class: Any) -> type:
    """The BART class for an Auto class (``AutoModelForSeq2SeqLM`` -> ``BartForConditionalGeneration``)."""
    name = getattr(auto_class, "__name__", str(auto_class))
    if name not in BART_HEADS:
        raise ValueError(f"--architecture bart has no head for {name}; known: {', '.join(BART_HEADS)}.")
    return BART_HEADS[name]


def is_forge_model(model: Any) -> bool:
    """True for a Forge model (its config is a ForgeConfig), False for the BART control."""
    return getattr(model.config, "model_type", None) == "forge"


def load_bart_model(model_args: Any, auto_class: Any, tokenizer: Any, forge_config: Any | None, overrides: dict) -> Any:
    """The BART model for ``--architecture bart``.

    From ``--model_name_or_path`` (a BART folder, e.g. one that ``recipes.pretrain --architecture bart`` wrote;
    a missing task head is newly initialised) or, without it, from scratch with ``forge_config`` mapped by
    :func:`bart_config_from_forge` (so the control has the Forge preset's shape).
    """
    head = bart_head_for(auto_class)
    if model_args.model_name_or_path:
        hub = {
            "cache_dir": model_args.cache_dir, "revision": model_args.model_revision, "token": model_args.token,
        }
        config = BartConfig.from_pretrained(model_args.config_name or model_args.model_name_or_path, **hub, **overrides)
        if config.model_type != "bart":
            raise ValueError(
                f"--architecture bart needs a BART folder, but {model_args.model_name_or_path} holds a "
                f"{config.model_type!r} model; use --architecture {config.model_type} (or train BART from a preset "
                "with --config_name)."
            )
        model, loading_info = head.from_pretrained(
            model_args.model_name_or_path, config=config, ignore_mismatched_sizes=True, output_loading_info=True,
            use_safetensors=True, **hub,
        )
        from .trainer_utils import check_mismatched_weights  # the same rule as for Forge folders

        check_mismatched_weights(loading_info.get("mismatched_keys") or (), model_args)
        return model
    config = bart_config_from_forge(forge_config)
    model = head(config)
    logger.info("BART control from scratch: %s shape, %.2fM parameters", model_args.config_name, model.num_parameters() / 1e6)
    return model


def save_bart_folder(model: Any, tokenizer: Any, output_dir: str | os.PathLike, *, task: str | None = None) -> Path:
    """Save the BART control as a folder that loads with the Auto classes (``trust_remote_code`` for the tokenizer).

    The Forge counterpart is ``recipes.publishing.export.save_hub_folder``; this one keeps BART's own config (no Forge
    ``auto_map``) and adds only the tokenizer code, the task pipeline and, for SRL, the token head's file.
    Files are written into a temporary folder and moved in, config.json last, as save_hub_folder does.
    """
    from ..publishing import export  # the Forge export's file-level helpers (one place for them)

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.bart-save-", dir=output_dir))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        export._copy_code(tmp, export.TOKENIZER_CODE_FILES, export._code_dirs(tokenizer, "tokenization"))
        export._write_slow_tokenizer_files(tmp)
        export._patch_tokenizer_config(tmp)
        if task in export.CUSTOM_PIPELINES:
            export._copy_code(tmp, ("pipeline_forge.py",), export._code_dirs(None, "modeling"))
            config = json.loads((tmp / export.CONFIG_NAME).read_text(encoding="utf-8"))
            config["custom_pipelines"] = {task: json.loads(json.dumps(export.CUSTOM_PIPELINES[task]))}
            export._write_json_atomic(tmp / export.CONFIG_NAME, config)
        for pickled in [p for p in tmp.iterdir() if p.suffix in export.PICKLE_SUFFIXES]:
            pickled.unlink()
        if not export.is_finished_model_dir(tmp):
            raise RuntimeError(f"save_pretrained wrote no safetensors weights into {tmp}; nothing was moved.")
        from .safety import honour_umask

        honour_umask(tmp)  # mkdtemp made it 0700: other users could not load the model
        export._move_into(tmp, output_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("Saved the BART control (%s, task=%s) to %s", type(model).__name__, task, output_dir)
    return output_dir


def copy_tokenizer_code(dest: str | os.PathLike) -> None:
    """Trainer checkpoints of the BART control: the tokenizer's code files (the model is plain BART)."""
    from ..publishing import export

    dest = Path(dest)
    export._copy_code(dest, export.TOKENIZER_CODE_FILES, export._code_dirs(None, "tokenization"))
    if (dest / export.TOKENIZER_CONFIG_NAME).is_file():
        export._patch_tokenizer_config(dest)


__all__ = [
    "ARCHITECTURES",
    "BART_HEADS",
    "bart_config_from_forge",
    "bart_head_for",
    "copy_tokenizer_code",
    "is_forge_model",
    "load_bart_model",
    "save_bart_folder",
]
