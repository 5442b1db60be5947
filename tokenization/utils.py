"""Helpers for recipes that extend a Forge tokenizer (not copied into model folders)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from tokenizers import AddedToken
from transformers.utils import logging as hf_logging


logger = logging.getLogger(__name__)


def check_task_tokens(tokens: Sequence[str]) -> None:
    """Refuse a token :func:`add_task_tokens` cannot add losslessly (``ValueError`` naming it)."""
    for token in tokens:
        if not token or not token.isascii() or not token.isprintable() or " " in token:
            raise ValueError(
                f"task token {token!r} must be non-empty printable ASCII without spaces: the byte-level decoder "
                "maps characters of added tokens through the byte alphabet, which garbles anything else"
            )


def add_task_tokens(tokenizer: Any, model: Any | None, tokens: list[str], special: bool = True) -> list[int]:
    """Add task marker tokens (e.g. SRL's ``["<pred>", "</pred>"]``) and grow the model's embeddings to match.

    Tokens already in the vocabulary keep their id. New ones get the next free ids, are matched whole in raw text
    (never split by BPE), and, with ``special=True``, are registered as extra special tokens (so
    ``decode(..., skip_special_tokens=True)`` drops them, like the sentinels). Then
    ``model.resize_token_embeddings(len(tokenizer))`` adds rows for them (tied ``lm_head`` included).
    Save the tokenizer together with the model afterwards: the ids live in the tokenizer files.

    Args:
        tokenizer: a ForgeTokenizerFast or ForgeTokenizer.
        model: a Forge model, or None to only extend the tokenizer.
        tokens: the token strings, printable ASCII without spaces (the byte-level decoder would garble other
            characters in an added token, in both tokenizer classes).
        special: register them as special tokens (default) or as plain added tokens.

    Returns:
        The id of each token, in the order given.

    Example:
        >>> pred_open, pred_close = add_task_tokens(tokenizer, model, ["<pred>", "</pred>"])
    """
    check_task_tokens(tokens)
    vocab = tokenizer.get_vocab()
    new = [t for t in dict.fromkeys(tokens) if t not in vocab]
    if new:
        added = [AddedToken(t, special=special, normalized=False, lstrip=False, rstrip=False) for t in new]
        if special:
            tokenizer.add_special_tokens({"extra_special_tokens": added}, replace_extra_special_tokens=False)
        else:
            tokenizer.add_tokens(added)
        logger.info("added %d task tokens: %s", len(new), new)
    if model is not None:
        embeddings = model.get_input_embeddings()
        if embeddings is None or embeddings.num_embeddings < len(tokenizer):
            # mean_resizing (transformers' default) starts the new rows at the mean of the existing embeddings,
            # a good start for marker tokens; its multi-line notice is replaced by one line here.
            verbosity = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()
            try:
                model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
            finally:
                hf_logging.set_verbosity(verbosity)
            logger.info("embedding resized to %d rows; new rows start at the mean of the existing ones", len(tokenizer))
    return tokenizer.convert_tokens_to_ids(list(tokens))
