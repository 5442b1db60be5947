"""Multi-process launches (torchrun / ``accelerate launch``) that every recipe shares.

Two things go silently wrong without this module:

* On a machine without an accelerator, transformers 5 sees no distributed set-up under torchrun unless
  ``use_cpu`` is set, so every rank trains alone on the full data and all of them write the output folder.
  :func:`prepare_launch` turns such a launch into CPU DDP (gloo).
* FSDP and DeepSpeed ZeRO-3 shard the parameters, so a plain ``save_pretrained`` on the main process would
  write shards. :func:`gathered_model` gathers the full state dict (a collective: every process calls it)
  into a fresh unsharded copy. ``accelerate`` cannot run FSDP / ZeRO-3 without GPUs (it silently falls back
  to independent processes, each writing the same folder), so :func:`prepare_launch` refuses that.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional

logger = logging.getLogger(__name__)

_TRUE = ("1", "true", "yes")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def sharded_launch_requested() -> Optional[str]:
    """"FSDP" or "DeepSpeed" when ``accelerate launch`` was asked for a sharding back-end, else None."""
    if _env_flag("ACCELERATE_USE_FSDP"):
        return "FSDP"
    if _env_flag("ACCELERATE_USE_DEEPSPEED"):
        return "DeepSpeed"
    return None


def prepare_launch() -> None:
    """Call before the TrainingArguments set up devices (i.e. before parsing them).

    Raises:
        RuntimeError: FSDP / DeepSpeed was requested on a machine without an accelerator.
    """
    import torch

    has_accelerator = torch.accelerator.is_available()
    backend = sharded_launch_requested()
    if backend and not has_accelerator:
        raise RuntimeError(
            f"This launch asks for {backend} (accelerate config), which needs GPUs; on a CPU-only machine accelerate "
            "would silently run independent processes that each train on all the data and write the same folder. "
            "On CPU use data parallelism instead: `OMP_NUM_THREADS=1 torchrun --nproc_per_node 2 -m recipes.<recipe> ...` "
            "or `accelerate launch --config_file recipes/accelerate_configs/ddp.yaml ...` with --use_cpu true."
        )
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not has_accelerator:
        if os.environ.setdefault("ACCELERATE_USE_CPU", "true").lower() in _TRUE:
            logger.info("Multi-process run without an accelerator: using CPU DDP (gloo).")


def gathered_model(trainer: Any, model: Any) -> Optional[Any]:
    """The trained model with full, unsharded weights on the main process (None on the others).

    Under DDP (or one process) that is ``model`` itself. Under FSDP / DeepSpeed ZeRO-3 the full state
    dict is gathered and loaded into a fresh CPU copy of the same class, which ``save_hub_folder`` writes
    as plain safetensors. Every process must call this (the gather is a collective).
    """
    if not (getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False)):
        return model
    state = trainer.accelerator.get_state_dict(trainer.model_wrapped)
    if not trainer.is_world_process_zero():
        return None
    full = type(model)(model.config)
    missing, unexpected = full.load_state_dict(state, strict=False)
    tied = getattr(full, "_tied_weights_keys", None) or {}  # e.g. lm_head.weight: loaded through the tie
    missing = [key for key in missing if key not in tied]
    if missing or unexpected:
        raise RuntimeError(f"The gathered state dict does not match the model: missing {missing}, unexpected {unexpected}")
    full.tie_weights()
    return full
