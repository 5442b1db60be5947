"""Forge tokenizer, pure-Python reference implementation (byte-level BPE).

Design, shared with the fast class in ``tokenization_forge_fast.py`` (which imports the constants below):

* **No normalisation.** Text goes in exactly as given: no Unicode normalisation (NFC/NFKC), no lower-casing,
  no stripping. Every string is turned into its UTF-8 bytes and every byte has a token, so
  ``decode(encode(x)) == x`` for any Unicode string (emoji and ZWJ sequences, combining marks, control characters,
  tabs, newlines, runs of spaces) and there is never an unknown token. The cost: ``"é"`` (U+00E9) and ``"e" + U+0301``
  are different token sequences; normalise your data yourself if you want them merged.
* **Pre-tokenisation** splits text with :data:`PRETOKENIZE_PATTERN` (GPT-2 shaped: contractions, letter runs with an
  optional leading space, digit runs, punctuation/symbol runs, whitespace) before byte-level BPE, with
  ``add_prefix_space=False``. Two differences from GPT-2:

  - runs of CJK ideographs and kana form their own words (``"GPU加速"`` -> ``"GPU"``, ``"加速"``), so BPE can learn
    Chinese/Japanese words without gluing them to Latin text or to CJK punctuation (``，。「」`` are punctuation);
  - every character class is written as **explicit code-point ranges**, never ``\\p{L}``-style Unicode properties.
    The Rust regex engine (Oniguruma, inside ``tokenizers``) and Python's ``re`` ship different Unicode versions and
    disagree on thousands of recently assigned code points; explicit ranges make the Python reference and the fast
    tokenizer split every string identically, now and after either library upgrades. Anything that is not
    whitespace, an ASCII digit, CJK or a listed punctuation/symbol range counts as a "letter" (Latin, Cyrillic,
    Arabic, Hangul, combining marks, control characters, unassigned code points...).
* **Special tokens** come first in the vocabulary, in this order: ``<pad>`` 0, ``<s>`` 1, ``</s>`` 2, ``<unk>`` 3,
  ``<mask>`` 4, then the sentinels ``<extra_id_0>`` ... ``<extra_id_{N-1}>`` (default N = 100), then the 256 byte
  symbols and the learned merges.
* **Post-processing**: a single sequence becomes ``X </s>``, a pair ``A </s> B </s>`` (no ``<s>`` in encoder
  inputs); ``text_target=Y`` gives labels ``Y </s>``.

This file is copied flat into model folders and loaded with ``trust_remote_code``: it imports nothing from this
repository.
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache

from transformers import PreTrainedTokenizer
from transformers.utils import logging


logger = logging.get_logger(__name__)

VOCAB_FILES_NAMES = {"vocab_file": "vocab.json", "merges_file": "merges.txt"}

PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN, MASK_TOKEN = "<pad>", "<s>", "</s>", "<unk>", "<mask>"
#: Fixed ids 0..4, in this order (design contract).
BASE_SPECIAL_TOKENS = [PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN, MASK_TOKEN]
DEFAULT_NUM_SENTINELS = 100
_SENTINEL_RE = re.compile(r"^<extra_id_(\d+)>$")


def sentinel_tokens(num_sentinels: int = DEFAULT_NUM_SENTINELS) -> list[str]:
    """The span-corruption sentinels ``<extra_id_0>`` ... ``<extra_id_{num_sentinels-1}>``."""
    return [f"<extra_id_{i}>" for i in range(num_sentinels)]


def special_tokens_in_order(num_sentinels: int = DEFAULT_NUM_SENTINELS) -> list[str]:
    """All special tokens in vocabulary order (ids 0, 1, 2, ...)."""
    return BASE_SPECIAL_TOKENS + sentinel_tokens(num_sentinels)


def sentinels_in_vocab(vocab: dict[str, int]) -> list[str]:
    """The sentinel tokens present in ``vocab``, ordered by their index ``i`` in ``<extra_id_i>``."""
    found = [(int(m.group(1)), tok) for tok in vocab if (m := _SENTINEL_RE.match(tok))]
    return [tok for _, tok in sorted(found)]


# --- Pre-tokenisation pattern ----------------------------------------------------------------------------------------
# Character classes as explicit code-point ranges (see the module docstring for why). They are spliced into the
# pattern as literal characters, which both Python's `re` and Oniguruma read the same way inside `[...]`.
_WHITESPACE = [(0x09, 0x0D), (0x20, 0x20), (0x85, 0x85), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A),
               (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000)]  # == str.isspace() minus \x1c-\x1f
_DIGITS = [(0x30, 0x39)]
_CJK = [
    (0x3040, 0x30FF),    # Hiragana, Katakana
    (0x3100, 0x312F),    # Bopomofo
    (0x31A0, 0x31FF),    # Bopomofo extended, CJK strokes, Katakana phonetic extensions
    (0x3400, 0x4DBF),    # CJK Unified Ideographs Extension A
    (0x4E00, 0x9FFF),    # CJK Unified Ideographs
    (0xF900, 0xFAFF),    # CJK Compatibility Ideographs
    (0x20000, 0x3FFFF),  # Supplementary and Tertiary Ideographic Planes (Extensions B..)
]
_PUNCT_SYMBOLS = [
    (0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E),  # ASCII punctuation and symbols
    (0xA1, 0xBF), (0xD7, 0xD7), (0xF7, 0xF7),                 # Latin-1 punctuation, signs, x and /
    (0x200D, 0x200D),                                         # zero-width joiner: keeps emoji ZWJ sequences whole
    (0x2010, 0x2027), (0x2030, 0x205E),                       # General Punctuation (dashes, quotes, ...)
    (0x20A0, 0x20CF),                                         # currency signs
    (0x2190, 0x2BFF),                                         # arrows, maths, technical, boxes, shapes, dingbats
    (0x3001, 0x303F),                                         # CJK symbols and punctuation
    (0xFE00, 0xFE0F),                                         # variation selectors (emoji presentation)
    (0xFE30, 0xFE6F),                                         # CJK compatibility forms, small forms
    (0xFF01, 0xFF0F), (0xFF1A, 0xFF20), (0xFF3B, 0xFF40), (0xFF5B, 0xFF65),  # full-width punctuation
    (0x1F000, 0x1FAFF),                                       # emoji, pictographs, playing cards, ...
    (0xE0020, 0xE007F),                                       # emoji tag characters (subdivision flags)
]


def _char_class(ranges: list[tuple[int, int]], negate: bool = False) -> str:
    def lit(cp: int) -> str:
        ch = chr(cp)
        return "\\" + ch if ch in "\\]^-[" else ch

    body = "".join(lit(a) if a == b else f"{lit(a)}-{lit(b)}" for a, b in ranges)
    return f"[{'^' if negate else ''}{body}]"


_WS = _char_class(_WHITESPACE)
_NOT_WS = _char_class(_WHITESPACE, negate=True)
_LETTER = _char_class(_WHITESPACE + _DIGITS + _CJK + _PUNCT_SYMBOLS, negate=True)

#: The split pattern, GPT-2 shaped. Alternatives are tried left to right (both engines are backtracking,
#: leftmost-first), every character is matched by some alternative, and the pieces are byte-level BPE'd one by one.
PRETOKENIZE_PATTERN = "|".join([
    r"'(?:[sdmtSDMT]|ll|ve|re|LL|VE|RE)",  # English contractions, case-sensitive like GPT-2
    f" ?{_LETTER}+",                      # words, with their leading space
    r" ?[0-9]+",                          # numbers
    f" ?{_char_class(_CJK)}+",            # CJK ideographs / kana runs
    f" ?{_char_class(_PUNCT_SYMBOLS)}+",  # punctuation, symbols, emoji
    f"{_WS}+(?!{_NOT_WS})",               # trailing whitespace (leaves one space for the next word)
    f"{_WS}+",                            # other whitespace
])
_PRETOKENIZE_RE = re.compile(PRETOKENIZE_PATTERN)


def pretokenize(text: str) -> list[str]:
    """Split ``text`` the way the fast tokenizer's ``Split(PRETOKENIZE_PATTERN, "isolated")`` does.

    Matches and the gaps between them are both kept, so ``"".join(pretokenize(t)) == t`` always holds.
    """
    pieces, last = [], 0
    for match in _PRETOKENIZE_RE.finditer(text):
        if match.start() > last:
            pieces.append(text[last : match.start()])
        pieces.append(match.group())
        last = match.end()
    if last < len(text):
        pieces.append(text[last:])
    return pieces


@lru_cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters.

    Printable Latin-1 bytes map to themselves; the others (control bytes, space, ...) are shifted to U+0100 onwards,
    so the space byte becomes ``"Ġ"``. This is the byte alphabet of ``tokenizers.pre_tokenizers.ByteLevel``.
    """
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    mapping, shift = {}, 0
    for b in range(256):
        if b in keep:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + shift)
            shift += 1
    return mapping


def load_merges(merges_file: str) -> list[tuple[str, str]]:
    """Read a GPT-2 style ``merges.txt`` (optional ``#version`` header, one ``left right`` pair per line)."""
    merges = []
    with open(merges_file, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle.read().split("\n"), start=1):
            if not line or (line_no == 1 and line.startswith("#version")):
                continue
            parts = line.split(" ")
            if len(parts) != 2:
                raise ValueError(f"{merges_file}:{line_no}: expected 'left right', got {line!r}")
            merges.append((parts[0], parts[1]))
    return merges


def write_vocab_and_merges(
    save_directory: str, vocab: dict[str, int], merges: list[tuple[str, str]], filename_prefix: str | None = None
) -> tuple[str, str]:
    """Write ``vocab.json`` and ``merges.txt`` (the slow tokenizer's files) into ``save_directory``."""
    prefix = f"{filename_prefix}-" if filename_prefix else ""
    vocab_path = os.path.join(save_directory, prefix + VOCAB_FILES_NAMES["vocab_file"])
    merges_path = os.path.join(save_directory, prefix + VOCAB_FILES_NAMES["merges_file"])
    with open(vocab_path, "w", encoding="utf-8") as handle:
        json.dump(dict(sorted(vocab.items(), key=lambda kv: kv[1])), handle, ensure_ascii=False, indent=0)
        handle.write("\n")
    with open(merges_path, "w", encoding="utf-8") as handle:
        handle.write("#version: 0.2\n")
        handle.writelines(f"{left} {right}\n" for left, right in merges)
    return vocab_path, merges_path


def check_vocabulary_present(name_or_path, subfolder: str | None = None) -> None:
    """Refuse a local folder with no vocabulary (no tokenizer.json, no vocab.json + merges.txt).

    Without this, the fast class would build a blank byte-level tokenizer and a model folder that lacks its
    tokenizer files would train or predict with ids that mean nothing, without a word.
    """
    folder = os.path.join(str(name_or_path), subfolder) if subfolder else str(name_or_path)
    if not os.path.isdir(folder):
        return  # a Hub id or a file: transformers reports what is missing
    if os.path.isfile(os.path.join(folder, "tokenizer.json")) or (
        os.path.isfile(os.path.join(folder, "vocab.json")) and os.path.isfile(os.path.join(folder, "merges.txt"))
    ):
        return
    raise ValueError(
        f"{folder} holds no tokenizer vocabulary (no tokenizer.json, no vocab.json + merges.txt). Point "
        "--tokenizer_name (or from_pretrained) at a trained tokenizer folder, or train one with "
        "`python -m tokenization.train --train_file CORPUS --vocab_size 16384 --output_dir TOKENIZER_DIR`."
    )


class ForgeTokenizer(PreTrainedTokenizer):
    """Byte-level BPE tokenizer for Forge models, in pure Python (the readable reference).

    Gives the same ids and decoded text as :class:`ForgeTokenizerFast` on every input (pairs, truncation, padding
    and ``text_target`` included); use the fast class in practice (it is what ``AutoTokenizer`` returns) and this
    one to read or check the algorithm. Like every transformers 5 Python tokenizer it has no offsets,
    ``word_ids()`` or ``sequence_ids()`` (``return_offsets_mapping`` is silently ignored): use the fast class for QA.

    Args:
        vocab_file: path to ``vocab.json`` (token -> id, special tokens first).
        merges_file: path to ``merges.txt`` (merge rules, highest priority first).
        errors: how invalid UTF-8 is decoded (``"replace"``, like the fast decoder; only partial byte sequences
            such as a lone piece of an emoji can produce it).
        extra_special_tokens: the sentinel tokens; by default every ``<extra_id_i>`` found in the vocabulary.
    """

    vocab_files_names = VOCAB_FILES_NAMES
    model_input_names = ["input_ids", "attention_mask"]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """transformers' loader; a local folder without a vocabulary is refused by name."""
        check_vocabulary_present(pretrained_model_name_or_path, kwargs.get("subfolder"))
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    def __init__(
        self,
        vocab_file: str,
        merges_file: str,
        errors: str = "replace",
        pad_token: str = PAD_TOKEN,
        bos_token: str = BOS_TOKEN,
        eos_token: str = EOS_TOKEN,
        unk_token: str = UNK_TOKEN,
        mask_token: str = MASK_TOKEN,
        extra_special_tokens: list[str] | None = None,
        add_prefix_space: bool = False,
        clean_up_tokenization_spaces: bool = False,
        **kwargs,
    ):
        if add_prefix_space:
            raise ValueError("ForgeTokenizer is trained with add_prefix_space=False; it cannot be turned on.")
        # The vocabulary must exist before PreTrainedTokenizer.__init__, which looks special tokens up in it.
        with open(vocab_file, encoding="utf-8") as handle:
            self.encoder: dict[str, int] = json.load(handle)
        self.decoder: dict[int, str] = {i: tok for tok, i in self.encoder.items()}
        self.bpe_ranks = {pair: rank for rank, pair in enumerate(load_merges(merges_file))}
        self.errors = errors
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {ch: b for b, ch in self.byte_encoder.items()}
        self._bpe_cache: dict[str, list[str]] = {}
        if extra_special_tokens is None:
            extra_special_tokens = sentinels_in_vocab(self.encoder)
        kwargs.pop("special_tokens_pattern", None)
        super().__init__(
            errors=errors,
            pad_token=pad_token,
            bos_token=bos_token,
            eos_token=eos_token,
            unk_token=unk_token,
            mask_token=mask_token,
            extra_special_tokens=extra_special_tokens,
            add_prefix_space=False,
            clean_up_tokenization_spaces=clean_up_tokenization_spaces,
            special_tokens_pattern="eos",  # X </s>  and  A </s> B </s>
            **kwargs,
        )

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def get_vocab(self) -> dict[str, int]:
        return {**self.encoder, **self._added_tokens_encoder}

    def bpe(self, word: str) -> list[str]:
        """Apply the merges to one pre-token (already mapped to byte characters), lowest rank first.

        At each step the best-ranked adjacent pair is merged, everywhere it occurs, left to right. This is the
        original GPT-2 procedure; it yields the same result as the priority-queue version in ``tokenizers``.
        """
        if word in self._bpe_cache:
            return self._bpe_cache[word]
        symbols = list(word)
        while len(symbols) > 1:
            ranked = [(self.bpe_ranks.get(pair, float("inf")), pair) for pair in zip(symbols, symbols[1:])]
            rank, best = min(ranked, key=lambda item: item[0])
            if rank == float("inf"):
                break
            merged, i = [], 0
            while i < len(symbols):
                if i < len(symbols) - 1 and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        if len(self._bpe_cache) < 100_000:
            self._bpe_cache[word] = symbols
        return symbols

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        """Text without added tokens -> BPE tokens: split, map each piece's UTF-8 bytes to characters, merge."""
        tokens = []
        for piece in pretokenize(text):
            tokens.extend(self.bpe("".join(self.byte_encoder[b] for b in piece.encode("utf-8"))))
        return tokens

    def _convert_token_to_id(self, token: str) -> int:
        return self.encoder.get(token, self.encoder.get(str(self.unk_token)))

    def _convert_id_to_token(self, index: int) -> str | None:
        return self.decoder.get(index)

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Tokens -> text, exactly like ``tokenizers.decoders.ByteLevel``.

        A token made only of byte characters becomes those bytes; any other token (an added token containing a
        character outside the byte alphabet) contributes its own UTF-8. The bytes are then decoded with
        ``errors`` (U+FFFD for invalid sequences, as Rust's ``from_utf8_lossy`` does).
        """
        data = bytearray()
        for token in tokens:
            if token is None:
                continue
            if all(ch in self.byte_decoder for ch in token):
                data.extend(self.byte_decoder[ch] for ch in token)
            else:
                data.extend(token.encode("utf-8"))
        return data.decode("utf-8", errors=self.errors)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        if not os.path.isdir(save_directory):
            raise ValueError(f"save_directory {save_directory!r} should be an existing directory")
        merges = [pair for pair, _ in sorted(self.bpe_ranks.items(), key=lambda kv: kv[1])]
        return write_vocab_and_merges(save_directory, self.encoder, merges, filename_prefix)


__all__ = ["ForgeTokenizer", "check_vocabulary_present"]
