"""Parameter-efficient fine-tuning with PEFT LoRA (``--use_lora``), for every recipe and head.

Forge's projections have their own names (fused ``qkv_proj`` for self-attention, ``q_proj`` + fused
``kv_proj`` for cross-attention, ``out_proj``, feed-forward ``fc1``/``fc2``), so PEFT cannot guess them; the
defaults here target all of them inside the encoder and decoder layers (a regular expression, so the task
head's own ``classifier.out_proj`` is not taken for an attention projection). The task head itself is new and
is trained in full (PEFT ``modules_to_save``).

A LoRA run writes two things: the usual Hub-ready folder in ``--output_dir`` with the adapter merged into the
weights (so pipelines, the main job and ``hub_upload.py`` work unchanged), and the adapter alone in
``<output_dir>/lora_adapter`` (``adapter_config.json`` + ``adapter_model.safetensors``), which loads with
``PeftModel.from_pretrained(base_model, "<output_dir>/lora_adapter")`` on top of the base folder.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ADAPTER_DIR = "lora_adapter"
# Projections inside encoder/decoder layers (self-attention, cross-attention, feed-forward, and the in/out
# projections of conv/recurrent token mixers; PEFT has no LoRA for the GRU/LSTM cell itself, which stays frozen).
DEFAULT_TARGET_NAMES = ("qkv_proj", "q_proj", "kv_proj", "out_proj", "fc1", "fc2", "in_proj")
_LAYER_SCOPE = r".*\.layers\.\d+\.(?:self_attn|encoder_attn|ffn|mixer)\."
# The head each Forge class adds on top of the encoder (trained in full); the seq2seq lm_head is tied to the
# embedding and stays frozen, as in PEFT's own seq2seq LoRA.
_TASK_TYPES = {
    "ForgeForConditionalGeneration": ("SEQ_2_SEQ_LM", []),
    "ForgeForSequenceClassification": ("SEQ_CLS", ["classifier"]),
    "ForgeForTokenClassification": ("TOKEN_CLS", ["classifier"]),
    "ForgeForQuestionAnswering": ("QUESTION_ANS", ["qa_outputs"]),
}


def target_modules_pattern(names: str | None) -> str:
    """The regular expression PEFT matches module names against, from comma-separated projection names."""
    chosen = [n.strip() for n in (names.split(",") if names else DEFAULT_TARGET_NAMES) if n.strip()]
    unknown = sorted(set(chosen) - set(DEFAULT_TARGET_NAMES))
    if unknown:
        raise ValueError(
            f"--lora_target_modules names {unknown}, which Forge layers do not have; choose from {list(DEFAULT_TARGET_NAMES)}."
        )
    return _LAYER_SCOPE + "(?:" + "|".join(chosen) + ")$"


def apply_lora(model: Any, model_args: Any) -> Any:
    """Wrap ``model`` in a PEFT LoRA model as ``--use_lora`` and the ``--lora_*`` flags ask."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as error:  # peft is a declared dependency; say how to get it if it was removed
        raise ImportError("--use_lora needs the peft package: pip install 'peft>=0.14'.") from error

    name = type(model).__name__
    if name not in _TASK_TYPES:
        raise ValueError(f"--use_lora supports {sorted(_TASK_TYPES)}, not {name}.")
    task_type, head = _TASK_TYPES[name]
    # options that add new modules (SRL's predicate context, QA's lexical-match vector, the seq2seq copy generator)
    # are trained in full too: frozen, they would stay at their random initialisation
    extras = ("predicate_context", "lexical_match", "copy_generator")
    head = head + [extra for extra in extras if getattr(model, extra, None) is not None]
    if model_args.lora_r <= 0 or model_args.lora_alpha <= 0 or not 0.0 <= model_args.lora_dropout < 1.0:
        raise ValueError(
            f"LoRA needs --lora_r > 0, --lora_alpha > 0 and 0 <= --lora_dropout < 1 "
            f"(got {model_args.lora_r}, {model_args.lora_alpha}, {model_args.lora_dropout})."
        )
    config = LoraConfig(
        task_type=task_type,
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=target_modules_pattern(model_args.lora_target_modules),
        modules_to_save=head or None,
    )
    peft_model = get_peft_model(model, config)
    trainable, total = peft_model.get_nb_trainable_parameters()
    logger.info("LoRA: %s trainable of %s parameters (%.2f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / total)
    return peft_model


def is_lora_model(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def save_adapter_and_merge(model: Any, output_dir: str | Path, base_model: str | None) -> Any:
    """Write the adapter to ``<output_dir>/lora_adapter`` and return the merged plain Forge model."""
    adapter_dir = Path(output_dir) / ADAPTER_DIR
    if base_model and Path(base_model).is_dir():
        base_model = str(Path(base_model).resolve())  # the adapter's pointer to its base must work from anywhere
    for config in model.peft_config.values():
        config.base_model_name_or_path = base_model
    model.save_pretrained(adapter_dir, safe_serialization=True)
    logger.info("Saved the LoRA adapter to %s (base: %s)", adapter_dir, base_model or "trained from scratch")
    return model.merge_and_unload()
