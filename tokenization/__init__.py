"""Forge tokenizers: a byte-level BPE pair (pure-Python reference + ``tokenizers``-backed fast class) and its trainer.

``import tokenization`` registers :class:`ForgeTokenizerFast` with ``AutoTokenizer`` for ``ForgeConfig``.

- :class:`ForgeTokenizer` (``tokenization_forge.py``): slow, readable, reads ``vocab.json`` + ``merges.txt``.
- :class:`ForgeTokenizerFast` (``tokenization_forge_fast.py``): fast; ``ForgeTokenizerFast()`` is blank and
  trainable with ``train_new_from_iterator``.
- :func:`train_tokenizer` / ``python -m tokenization.train``: train a vocabulary from files or a dataset.
- :func:`add_task_tokens`: add marker tokens and resize a model's embeddings.

Both classes are lossless (no normalisation) and give identical ids; see ``tokenization_forge.py`` for the design.
"""

from __future__ import annotations

import importlib
import logging

from .tokenization_forge import (
    BASE_SPECIAL_TOKENS,
    DEFAULT_NUM_SENTINELS,
    PRETOKENIZE_PATTERN,
    ForgeTokenizer,
    sentinel_tokens,
    special_tokens_in_order,
)
from .tokenization_forge_fast import ForgeTokenizerFast
from .utils import add_task_tokens


logger = logging.getLogger(__name__)


def register_auto_class() -> bool:
    """Register ForgeTokenizerFast with ``AutoTokenizer`` for ``ForgeConfig``; False if ``modeling`` is unavailable.

    Only the fast class is registered: ``AutoTokenizer`` always returns the fast class in transformers 5, and
    registering the slow one too would make a config naming ``ForgeTokenizer`` resolve to the slow class.
    """
    modeling = __name__.removesuffix("tokenization") + "modeling"  # "modeling" in a checkout, "forge.modeling" installed
    try:
        ForgeConfig = importlib.import_module(modeling).ForgeConfig
    except ModuleNotFoundError as error:  # no `modeling` package at all: fine; a broken one must fail loudly
        if error.name != modeling:
            raise
        logger.debug("the modeling package is not importable; AutoTokenizer registration skipped")
        return False
    from transformers import AutoTokenizer

    AutoTokenizer.register(ForgeConfig, tokenizer_class=ForgeTokenizerFast, exist_ok=True)
    return True


def train_tokenizer(*args, **kwargs) -> ForgeTokenizerFast:
    """Train a ForgeTokenizerFast on an iterator of texts; see :func:`tokenization.train.train_tokenizer`."""
    from .train import train_tokenizer as _train

    return _train(*args, **kwargs)


register_auto_class()

__all__ = [
    "BASE_SPECIAL_TOKENS",
    "DEFAULT_NUM_SENTINELS",
    "PRETOKENIZE_PATTERN",
    "ForgeTokenizer",
    "ForgeTokenizerFast",
    "add_task_tokens",
    "register_auto_class",
    "sentinel_tokens",
    "special_tokens_in_order",
    "train_tokenizer",
]
