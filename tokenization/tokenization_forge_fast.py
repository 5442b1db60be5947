"""Forge tokenizer backed by the Rust ``tokenizers`` library.

Same design as :mod:`tokenization_forge` (the pure-Python reference; read its docstring): byte-level BPE, no
normalisation (lossless for any Unicode string), the explicit-range split pattern
:data:`~tokenization_forge.PRETOKENIZE_PATTERN`, ``add_prefix_space=False``, special tokens first
(``<pad>`` 0, ``<s>`` 1, ``</s>`` 2, ``<unk>`` 3, ``<mask>`` 4, ``<extra_id_0..N-1>``), and post-processing
``X </s>`` / ``A </s> B </s>``. The backend pipeline is::

    normalizer     None
    pre_tokenizer  Sequence[Split(PRETOKENIZE_PATTERN, "isolated"), ByteLevel(add_prefix_space=False, use_regex=False)]
    model          BPE(unk_token="<unk>", no dropout, no continuing-subword prefix)
    post_processor Sequence[ByteLevel(trim_offsets=True), TemplateProcessing("$A </s>", "$A </s> $B:1 </s>:1")]
    decoder        ByteLevel

``trim_offsets=True`` means ``return_offsets_mapping`` spans do not include the space a token carries
(``" Paris"`` points at ``"Paris"``), which is what extractive QA wants.

``ForgeTokenizerFast()`` with no files is a blank tokenizer (special tokens + the 256 byte symbols, no merges);
``train_new_from_iterator(texts, vocab_size)`` returns a trained one. ``save_pretrained`` writes ``tokenizer.json``
plus ``vocab.json`` / ``merges.txt`` so :class:`ForgeTokenizer` loads from the same folder.

This file is copied flat into model folders and loaded with ``trust_remote_code``: relative imports only.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator

from tokenizers import AddedToken, Regex, Tokenizer, decoders, pre_tokenizers, processors
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer
from transformers import PreTrainedTokenizerFast
from transformers.utils import logging

from .tokenization_forge import (
    BOS_TOKEN,
    DEFAULT_NUM_SENTINELS,
    EOS_TOKEN,
    MASK_TOKEN,
    PAD_TOKEN,
    PRETOKENIZE_PATTERN,
    UNK_TOKEN,
    _NOT_WS,
    ForgeTokenizer,
    bytes_to_unicode,
    check_vocabulary_present,
    load_merges,
    sentinels_in_vocab,
    special_tokens_in_order,
    write_vocab_and_merges,
)


logger = logging.get_logger(__name__)

#: Training only: runs of non-whitespace longer than this are cut into pieces before the BPE trainer sees them.
#: The trainer's merge step costs time proportional to a word's length for every occurrence of a pair in it, so
#: one unbroken run of n characters (a URL list, base64, CJK text without punctuation) costs O(n^2); pieces of
#: at most this many characters keep training linear in the corpus. Encoding is unaffected (no token is this long).
MAX_TRAINING_RUN_CHARS = 128
_LONG_RUN_START = re.compile(f"{_NOT_WS}{{{MAX_TRAINING_RUN_CHARS + 1}}}")
_RUN = re.compile(f"{_NOT_WS}+")


def split_long_runs(text: str, max_chars: int = MAX_TRAINING_RUN_CHARS) -> list[str]:
    """``text`` as pieces whose non-whitespace runs are at most ``max_chars`` long; ``"".join(pieces) == text``."""
    if len(text) <= max_chars or not _LONG_RUN_START.search(text):
        return [text]
    pieces, last = [], 0
    for run in _RUN.finditer(text):
        for cut in range(run.start() + max_chars, run.end(), max_chars):
            pieces.append(text[last:cut])
            last = cut
    pieces.append(text[last:])
    return pieces


def _training_batches(text_iterator: Iterable) -> Iterator[list[str]]:
    """Strings or lists of strings -> lists of strings with long runs split (see ``MAX_TRAINING_RUN_CHARS``)."""
    for item in text_iterator:
        texts = [item] if isinstance(item, str) else item
        yield [piece for text in texts for piece in split_long_runs(text)]


VOCAB_FILES_NAMES = {"vocab_file": "vocab.json", "merges_file": "merges.txt", "tokenizer_file": "tokenizer.json"}


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False, trim_offsets=True),
        ]
    )


def _post_processor(eos_token: str, eos_token_id: int) -> processors.PostProcessor:
    return processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=True, add_prefix_space=False),
            processors.TemplateProcessing(
                single=f"$A:0 {eos_token}:0",
                pair=f"$A:0 {eos_token}:0 $B:1 {eos_token}:1",
                special_tokens=[(eos_token, eos_token_id)],
            ),
        ]
    )


def build_backend(
    vocab: dict[str, int] | None = None,
    merges: list[tuple[str, str]] | None = None,
    num_sentinels: int = DEFAULT_NUM_SENTINELS,
) -> Tokenizer:
    """The ``tokenizers.Tokenizer`` pipeline of a Forge tokenizer (see the module docstring).

    Without ``vocab`` the model holds the special tokens then the 256 byte symbols and no merges: a valid,
    lossless (one token per byte) tokenizer that ``train_new_from_iterator`` can train.
    """
    if vocab is None:
        vocab = {tok: i for i, tok in enumerate(special_tokens_in_order(num_sentinels))}
        for ch in sorted(bytes_to_unicode().values()):
            vocab[ch] = len(vocab)
        merges = []
    backend = Tokenizer(
        BPE(vocab=vocab, merges=merges or [], unk_token=UNK_TOKEN, dropout=None, fuse_unk=False,
            continuing_subword_prefix="", end_of_word_suffix="", byte_fallback=False, ignore_merges=False)
    )
    backend.normalizer = None
    backend.pre_tokenizer = _pre_tokenizer()
    backend.decoder = decoders.ByteLevel()
    return backend


class ForgeTokenizerFast(PreTrainedTokenizerFast):
    """Byte-level BPE tokenizer for Forge models, backed by ``tokenizers`` (what ``AutoTokenizer`` returns).

    Args:
        vocab / merges: an in-memory vocabulary and merge list (what ``from_pretrained`` passes); or
        vocab_file / merges_file: ``vocab.json`` / ``merges.txt`` paths; or
        tokenizer_file / tokenizer_object: a serialised / live ``tokenizers.Tokenizer``.
        With none of them, a blank trainable tokenizer with ``num_sentinels`` sentinels is built.
        extra_special_tokens: the sentinel tokens; by default every ``<extra_id_i>`` in the vocabulary.

    Pre-split words (``is_split_into_words=True``, SRL / NER): each word is tokenized on its own and no space is
    inserted between words (``add_prefix_space`` is off by design). To get the ids of the running text, give
    every word but the first its leading space: ``[w if i == 0 else " " + w for i, w in enumerate(words)]``;
    ``word_ids()`` still maps each token to its word.
    """

    vocab_files_names = VOCAB_FILES_NAMES
    model_input_names = ["input_ids", "attention_mask"]
    slow_tokenizer_class = ForgeTokenizer
    model = BPE

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """transformers' loader; a local folder without a vocabulary is refused by name (it would otherwise
        give a blank tokenizer; ``ForgeTokenizerFast()`` is the way to ask for one)."""
        check_vocabulary_present(pretrained_model_name_or_path, kwargs.get("subfolder"))
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    def __init__(
        self,
        vocab: str | dict[str, int] | None = None,
        merges: str | list | None = None,
        vocab_file: str | None = None,
        merges_file: str | None = None,
        tokenizer_file: str | None = None,
        tokenizer_object: Tokenizer | None = None,
        pad_token: str = PAD_TOKEN,
        bos_token: str = BOS_TOKEN,
        eos_token: str = EOS_TOKEN,
        unk_token: str = UNK_TOKEN,
        mask_token: str = MASK_TOKEN,
        extra_special_tokens: list[str] | None = None,
        num_sentinels: int = DEFAULT_NUM_SENTINELS,
        add_prefix_space: bool = False,
        clean_up_tokenization_spaces: bool = False,
        **kwargs,
    ):
        if add_prefix_space:
            raise ValueError("ForgeTokenizerFast is trained with add_prefix_space=False; it cannot be turned on.")
        # from_pretrained reaches here with one of: a live object (train_new_from_iterator), tokenizer.json
        # (trust_remote_code path), vocab+merges extracted from tokenizer.json (in-process path), or the slow files.
        if tokenizer_object is None and tokenizer_file is not None and os.path.isfile(tokenizer_file):
            tokenizer_object = Tokenizer.from_file(tokenizer_file)
        if tokenizer_object is None:
            if vocab is None and vocab_file is not None and os.path.isfile(vocab_file):
                vocab = vocab_file
            if merges is None and merges_file is not None and os.path.isfile(merges_file):
                merges = merges_file
            if isinstance(vocab, str):
                with open(vocab, encoding="utf-8") as handle:
                    vocab = json.load(handle)
            if isinstance(merges, str):
                merges = load_merges(merges)
            if merges is not None:
                merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]
            tokenizer_object = build_backend(vocab, merges, num_sentinels)
        kwargs.pop("post_processor", None)  # we always install our own (below)
        vocab_now = tokenizer_object.get_vocab(with_added_tokens=True)
        if extra_special_tokens is None:
            extra_special_tokens = sentinels_in_vocab(vocab_now)
        for token in [pad_token, bos_token, eos_token, unk_token, mask_token]:
            if str(token) not in vocab_now:
                raise ValueError(f"special token {token!r} is missing from the vocabulary; retrain the tokenizer")
        # Special tokens are part of the BPE vocabulary (ids 0..4+N); registering them as added tokens too makes
        # the backend match them whole in raw text, never split them.
        tokenizer_object.add_special_tokens(
            [AddedToken(str(t), special=True, normalized=False) for t in
             [pad_token, bos_token, eos_token, unk_token, mask_token, *extra_special_tokens]]
        )
        super().__init__(
            tokenizer_object=tokenizer_object,
            pad_token=pad_token,
            bos_token=bos_token,
            eos_token=eos_token,
            unk_token=unk_token,
            mask_token=mask_token,
            extra_special_tokens=extra_special_tokens,
            add_prefix_space=False,
            clean_up_tokenization_spaces=clean_up_tokenization_spaces,
            **kwargs,
        )
        self.update_post_processor()

    @classmethod
    def convert_to_native_format(cls, trust_remote_code: bool = False, **kwargs):
        """Load ``tokenizer.json`` whole when there is one (added tokens included); else the vocab/merges files.

        The base class would extract only vocab + merges from ``tokenizer.json`` for a class with its own
        ``__init__`` and drop the added tokens (e.g. task tokens added after training).
        """
        tokenizer_file = kwargs.get("tokenizer_file")
        if tokenizer_file is not None and os.path.isfile(tokenizer_file):
            return dict(kwargs)
        return super().convert_to_native_format(trust_remote_code=trust_remote_code, **kwargs)

    def update_post_processor(self) -> None:
        """Install ``X </s>`` / ``A </s> B </s>`` (transformers calls this whenever bos/eos settings change)."""
        if self.eos_token is None or self.eos_token_id is None:
            raise ValueError("ForgeTokenizerFast needs an eos_token ('</s>') for its post-processor")
        self._tokenizer.post_processor = _post_processor(str(self.eos_token), self.eos_token_id)

    @property
    def can_save_slow_tokenizer(self) -> bool:
        return True

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        """Write ``vocab.json`` + ``merges.txt`` (for :class:`ForgeTokenizer`) from the backend BPE model."""
        model = json.loads(self._tokenizer.to_str())["model"]
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        return write_vocab_and_merges(save_directory, model["vocab"], merges, filename_prefix)

    def _save_pretrained(self, save_directory, file_names, legacy_format=None, filename_prefix=None):
        file_names = super()._save_pretrained(save_directory, file_names, legacy_format, filename_prefix)
        file_names = file_names + self.save_vocabulary(str(save_directory), filename_prefix)
        # Name the real class: transformers strips "Fast" when a slow class exists, which would make
        # AutoTokenizer look for "ForgeTokenizer" first.
        config_file = os.path.join(str(save_directory), (f"{filename_prefix}-" if filename_prefix else "")
                                   + "tokenizer_config.json")
        if os.path.isfile(config_file):
            with open(config_file, encoding="utf-8") as handle:
                config = json.load(handle)
            config["tokenizer_class"] = type(self).__name__
            with open(config_file, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        return file_names

    def train_new_from_iterator(self, text_iterator, vocab_size: int, length: int | None = None,
                                new_special_tokens=None, special_tokens_map=None, **kwargs) -> "ForgeTokenizerFast":
        """Train a new vocabulary of ``vocab_size`` tokens (special tokens included) on an iterator of texts.

        Accepts an iterator of strings or of lists of strings (runs of non-whitespace longer than
        ``MAX_TRAINING_RUN_CHARS`` are cut into pieces first, which keeps training linear). The special tokens keep ids 0..4+N; the 256 byte
        symbols are always included, so the result is lossless on any text. Extra keyword arguments
        (``min_frequency``, ``show_progress``, ``limit_alphabet`` ...) go to ``tokenizers.trainers.BpeTrainer``.
        """
        if special_tokens_map:
            raise ValueError("ForgeTokenizerFast special tokens are fixed by the design; special_tokens_map is not supported")
        specials = [str(t) for t in
                    [self.pad_token, self.bos_token, self.eos_token, self.unk_token, self.mask_token,
                     *self.extra_special_tokens]]
        specials += [str(t) for t in (new_special_tokens or []) if str(t) not in specials]
        needed = len(specials) + 256
        if vocab_size < needed:
            raise ValueError(f"vocab_size={vocab_size} is too small: the {len(specials)} special tokens and 256 byte "
                             f"symbols alone need {needed}; pass vocab_size >= {needed} or fewer sentinels")
        kwargs.setdefault("show_progress", True)
        trainer = BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[AddedToken(t, special=True, normalized=False) for t in specials],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            **kwargs,
        )
        backend = Tokenizer(BPE(unk_token=UNK_TOKEN, dropout=None, fuse_unk=False))
        backend.normalizer = None
        backend.pre_tokenizer = _pre_tokenizer()
        backend.decoder = decoders.ByteLevel()
        backend.train_from_iterator(_training_batches(text_iterator), trainer=trainer, length=length)
        init_kwargs = {k: v for k, v in self.init_kwargs.items()
                       if k not in ("vocab", "merges", "vocab_file", "merges_file", "tokenizer_file",
                                    "tokenizer_object", "extra_special_tokens", "name_or_path")}
        return type(self)(tokenizer_object=backend, extra_special_tokens=[t for t in specials if t not in
                          (self.pad_token, self.bos_token, self.eos_token, self.unk_token, self.mask_token)],
                          **init_kwargs)


__all__ = ["ForgeTokenizerFast", "build_backend"]
