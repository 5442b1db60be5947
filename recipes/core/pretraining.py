"""Pretraining pieces: T5 span corruption, document packing, word-vector embedding init.

Objective choice: T5-style span corruption rather than BART text infilling. Both denoise corrupted
text, but BART's decoder reconstructs the *whole* input (target length ~ block length), while T5's
decoder only emits the dropped spans, each behind its sentinel: with noise_density 0.15 and mean
span length 3 a block of L tokens gives a target of about 0.2 * L tokens (0.15 L noise tokens +
0.05 L sentinels + </s>). The decoder, its cross-attention and the softmax over the vocabulary then
run on ~1/5 of the tokens BART would feed them, which is most of the step time on a CPU, and T5
reports span corruption as the better of the two objectives at equal compute (Raffel et al. 2020,
section 3.3).

Determinism: the noise mask of a block is drawn from ``numpy.random.default_rng([seed, epoch,
block_id])``. It depends only on the block, never on which process, batch or step collates it, so

* a run resumed from a checkpoint sees exactly the masks the uninterrupted run saw (the Trainer
  replays the same block order), and
* 2 processes x batch b see the same masks as 1 process x batch 2b.

Every block therefore carries a ``block_id`` column, and the Trainer must run with
``remove_unused_columns=False`` so the collator receives it (it is not passed to the model).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

# The model's own shift (one definition): the collator builds exactly the decoder inputs the model would.
from .layout import modeling

shift_tokens_right = modeling.modeling_forge.shift_tokens_right

logger = logging.getLogger(__name__)

SENTINEL_TEMPLATE = "<extra_id_{}>"
# Eval blocks carry this column so their masks never change between evaluations: the validation
# loss is then comparable across the run (and between runs with the same seed).
EVAL_NOISE_EPOCH_COLUMN = "noise_epoch"


# --------------------------------------------------------------------------------------------
# Span corruption
# --------------------------------------------------------------------------------------------


def _noise_counts(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """Number of noise tokens and noise spans T5 uses for a sequence of ``length`` tokens."""
    length = max(length, 2)  # T5: avoid degeneracy for 0/1-token sequences
    num_noise_tokens = int(round(length * noise_density))
    # at least one noise and one non-noise token
    num_noise_tokens = min(max(num_noise_tokens, 1), length - 1)
    num_noise_spans = int(round(num_noise_tokens / mean_noise_span_length))
    num_noise_spans = max(num_noise_spans, 1)
    # Every noise span is preceded by a non-empty non-noise span. T5 never hits this bound at sane
    # densities; the clamp only keeps extreme settings (density ~0.9, span 1) well defined.
    num_noise_spans = min(num_noise_spans, length - num_noise_tokens)
    return num_noise_tokens, num_noise_spans


def corrupted_lengths(length: int, noise_density: float = 0.15, mean_noise_span_length: float = 3.0) -> tuple[int, int]:
    """(encoder input length, label length) of a corrupted block of ``length`` tokens.

    Both are fixed for a given block length, so full blocks need no padding at all:
    inputs = non-noise tokens + one sentinel per span + </s>; labels = noise tokens + one sentinel
    per span + </s>.
    """
    if length <= 0:
        return 1, 1
    noise, spans = _noise_counts(length, noise_density, mean_noise_span_length)
    if length == 1:  # the single token is kept (see random_spans_noise_mask)
        return 2, 1
    return length - noise + spans + 1, noise + spans + 1


def random_spans_noise_mask(
    length: int,
    noise_density: float = 0.15,
    mean_noise_span_length: float = 3.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Boolean noise mask of ``length`` tokens, exactly as T5's ``random_spans_noise_mask``.

    ``round(length * noise_density)`` tokens are noise, split into
    ``round(num_noise_tokens / mean_noise_span_length)`` spans. Noise and non-noise run lengths are
    uniformly random segmentations (every composition equally likely); the sequence starts with a
    non-noise span and spans alternate, so the mask ends with a noise span.
    """
    if rng is None:
        rng = np.random.default_rng()
    if noise_density <= 0.0 or length <= 1:
        return np.zeros(length, dtype=bool)
    orig_length = length
    length = max(length, 2)
    num_noise_tokens, num_noise_spans = _noise_counts(length, noise_density, mean_noise_span_length)
    num_nonnoise_tokens = length - num_noise_tokens

    def random_segmentation(num_items: int, num_segments: int) -> np.ndarray:
        # Choose num_segments - 1 cut points among the num_items - 1 gaps, uniformly.
        first_in_segment = np.arange(num_items - 1) < (num_segments - 1)
        rng.shuffle(first_in_segment)
        first_in_segment = np.concatenate([[False], first_in_segment])
        segment_id = np.cumsum(first_in_segment)
        return np.bincount(segment_id, minlength=num_segments)

    noise_span_lengths = random_segmentation(num_noise_tokens, num_noise_spans)
    nonnoise_span_lengths = random_segmentation(num_nonnoise_tokens, num_noise_spans)
    interleaved = np.stack([nonnoise_span_lengths, noise_span_lengths], axis=1).reshape(-1)
    span_starts = np.cumsum(interleaved)[:-1]
    span_start_indicator = np.zeros(length, dtype=np.int64)
    span_start_indicator[span_starts] = 1
    span_num = np.cumsum(span_start_indicator)
    return (span_num % 2 == 1)[:orig_length]


def sentinel_ids(tokenizer: Any, count: int) -> list[int]:
    """Ids of ``<extra_id_0>`` .. ``<extra_id_{count-1}>``, looked up by name (see the contract)."""
    ids = []
    unk = getattr(tokenizer, "unk_token_id", None)
    for i in range(count):
        token = SENTINEL_TEMPLATE.format(i)
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == unk:
            raise ValueError(
                f"The tokenizer has no sentinel token {token!r}, but span corruption of this block length needs "
                f"{count} sentinels. Train the tokenizer with more sentinels (tokenization.train num_sentinels) "
                f"or use a smaller --block_size / --noise_density."
            )
        ids.append(int(token_id))
    return ids


def span_corrupt(
    input_ids: Sequence[int], noise_mask: np.ndarray, sentinels: Sequence[int], eos_token_id: int
) -> tuple[list[int], list[int]]:
    """Apply a noise mask: the i-th noise span becomes ``<extra_id_i>`` in the inputs.

    inputs = kept tokens with each noise span replaced by its sentinel, then </s>;
    labels = for each span i: ``<extra_id_i>`` followed by the span's tokens; then </s>.
    """
    if len(input_ids) != len(noise_mask):
        raise ValueError(f"noise mask length {len(noise_mask)} != sequence length {len(input_ids)}")
    inputs: list[int] = []
    labels: list[int] = []
    span = -1
    previous_noise = False
    for token, is_noise in zip(input_ids, noise_mask):
        if is_noise:
            if not previous_noise:
                span += 1
                if span >= len(sentinels):
                    raise ValueError(
                        f"Block needs more than {len(sentinels)} sentinel tokens; lower --block_size or train the "
                        "tokenizer with more sentinels."
                    )
                inputs.append(sentinels[span])
                labels.append(sentinels[span])
            labels.append(int(token))
        else:
            inputs.append(int(token))
        previous_noise = bool(is_noise)
    inputs.append(eos_token_id)
    labels.append(eos_token_id)
    return inputs, labels


@dataclass
class SpanCorruptionCollator:
    """Collate packed token blocks into T5 span-corruption batches.

    Each feature holds ``input_ids`` (a block of raw tokens, no special tokens added) and
    optionally ``block_id`` (int; makes the noise mask reproducible, see the module docstring) and
    ``noise_epoch`` (pins the mask of eval blocks). Returns ``input_ids``, ``attention_mask``,
    ``labels`` (pad positions -100) and ``decoder_input_ids`` (the model's own shift: decoder start
    ``<s>``, then the labels shifted right). Full blocks of one length need no padding; a short last
    block is right-padded.

    Attributes:
        tokenizer: a Forge tokenizer (sentinels ``<extra_id_i>``, ``</s>``, ``<pad>``).
        model: optional; when given, ``model.prepare_decoder_input_ids_from_labels`` builds the
            decoder inputs so the collator and the model agree by construction.
        noise_density: fraction of tokens dropped (T5: 0.15).
        mean_noise_span_length: mean length of a dropped span (T5: 3.0).
        seed: base seed of the noise masks.
        epoch: mixed into the mask seed so a block gets a fresh mask each epoch; kept in sync by
            ``SpanCorruptionEpochCallback``.
    """

    tokenizer: Any
    model: Any = None
    noise_density: float = 0.15
    mean_noise_span_length: float = 3.0
    seed: int = 42
    epoch: int = 0
    pad_to_multiple_of: int | None = None
    decoder_start_token_id: int | None = None
    _sentinels: list[int] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.noise_density < 1.0:
            raise ValueError(f"noise_density must be in (0, 1), got {self.noise_density}")
        if self.mean_noise_span_length < 1.0:
            raise ValueError(f"mean_noise_span_length must be >= 1, got {self.mean_noise_span_length}")
        for name in ("eos_token_id", "pad_token_id"):
            if getattr(self.tokenizer, name, None) is None:
                raise ValueError(f"span corruption needs the tokenizer's {name} (Forge tokenizers define it)")
        if self.decoder_start_token_id is None:
            config = getattr(self.model, "config", None)
            start = getattr(config, "decoder_start_token_id", None)
            self.decoder_start_token_id = start if start is not None else self.tokenizer.bos_token_id

    def sentinels_for(self, length: int, spans: int | None = None) -> list[int]:
        """Sentinel ids for a block of ``length`` tokens, or for ``spans`` spans (cached, grows on demand)."""
        if spans is None:
            _, spans = _noise_counts(max(length, 2), self.noise_density, self.mean_noise_span_length)
        if spans > len(self._sentinels):
            self._sentinels = sentinel_ids(self.tokenizer, spans)
        return self._sentinels

    def noise_mask(self, length: int, block_id: int | None, epoch: int | None = None) -> np.ndarray:
        """The mask of one block: a function of (seed, epoch, block_id) only."""
        if block_id is None:
            # No identity: fall back to torch's global generator, which the Trainer seeds and
            # checkpoints per process (resume still replays it; cross-process equality does not hold).
            rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,)).item()))
        else:
            epoch = self.epoch if epoch is None else epoch
            rng = np.random.default_rng([self.seed, int(epoch), int(block_id)])
        return random_spans_noise_mask(length, self.noise_density, self.mean_noise_span_length, rng)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        all_inputs, all_labels = [], []
        for feature in features:
            ids = feature["input_ids"]
            ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
            block_id = feature.get("block_id")
            epoch = feature.get(EVAL_NOISE_EPOCH_COLUMN)
            mask = self.noise_mask(len(ids), None if block_id is None else int(block_id), epoch)
            spans = int(mask[:1].sum() + np.sum(mask[1:] & ~mask[:-1]))
            inputs, labels = span_corrupt(ids, mask, self.sentinels_for(len(ids), spans), eos)
            all_inputs.append(inputs)
            all_labels.append(labels)
        input_ids, attention_mask = self._pad(all_inputs, pad)
        labels, _ = self._pad(all_labels, -100)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if self.model is not None and hasattr(self.model, "prepare_decoder_input_ids_from_labels"):
            batch["decoder_input_ids"] = self.model.prepare_decoder_input_ids_from_labels(labels=labels)
        else:
            batch["decoder_input_ids"] = shift_tokens_right(labels, pad, self.decoder_start_token_id)
        return batch

    def _pad(self, rows: list[list[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows)
        if self.pad_to_multiple_of:
            width = math.ceil(width / self.pad_to_multiple_of) * self.pad_to_multiple_of
        out = torch.full((len(rows), width), value, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
        return out, mask


class SpanCorruptionEpochCallback(TrainerCallback):
    """Tell the collator which epoch it is collating, so each epoch draws fresh masks.

    ``state.epoch`` is exactly the integer epoch at ``on_epoch_begin`` on a fresh start, and the
    fractional position inside it on a resume, so its floor is the loop's epoch in both cases.
    """

    def __init__(self, collator: SpanCorruptionCollator) -> None:
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):  # noqa: D102
        self.collator.epoch = int(math.floor(state.epoch or 0.0))


# --------------------------------------------------------------------------------------------
# Packing
# --------------------------------------------------------------------------------------------


def pack_token_sequences(
    sequences: Iterable[Sequence[int]], block_size: int, eos_token_id: int | None, drop_last: bool = False
) -> Iterator[list[int]]:
    """Concatenate documents (each followed by </s>) and cut the stream into ``block_size`` blocks.

    Every token of every document appears exactly once, in order; all blocks are full except
    possibly the last, which is dropped when ``drop_last``. Pass ``eos_token_id=None`` when the
    sequences already end with a separator.
    """
    if block_size <= 0:
        raise ValueError(f"block_size must be positive, got {block_size}")
    buffer: list[int] = []
    for seq in sequences:
        buffer.extend(int(t) for t in seq)
        if eos_token_id is not None:
            buffer.append(eos_token_id)
        if len(buffer) >= block_size:
            full = len(buffer) // block_size * block_size
            for start in range(0, full, block_size):
                yield buffer[start : start + block_size]
            buffer = buffer[full:]
    if buffer and not drop_last:
        yield buffer


def _tokenize_batch(tokenizer: Any, text_column: str):
    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        texts = batch[text_column]
        # Documents are tokenized without special tokens: packing adds exactly one </s> after each.
        return {"input_ids": tokenizer(texts, add_special_tokens=False)["input_ids"]}

    return tokenize


def pack_dataset(
    dataset: Any,
    tokenizer: Any,
    text_column: str,
    block_size: int,
    drop_last: bool = False,
    num_proc: int | None = None,
    eval_noise_epoch: int | None = None,
) -> Any:
    """Map-style path: tokenize a ``datasets.Dataset`` and pack it into blocks.

    Packing is global (not per map batch, as the transformers example scripts do, which drops
    the tail of every batch), so no token is lost. The token stream is held as one int32 array:
    ~4 bytes per token, i.e. 40 MB for 10 M tokens; larger corpora take the streaming path.
    Returns a Dataset with ``input_ids`` and ``block_id`` (and ``noise_epoch`` when
    ``eval_noise_epoch`` is given, for validation sets).
    """
    import datasets

    if text_column not in dataset.column_names:
        raise ValueError(
            f"text column {text_column!r} not found; columns are {dataset.column_names}. Pass --text_column."
        )
    tokenized = dataset.map(
        _tokenize_batch(tokenizer, text_column),
        batched=True,
        num_proc=num_proc,
        remove_columns=dataset.column_names,
        desc="Tokenizing",
    )
    eos = tokenizer.eos_token_id
    pieces = []
    for row in tokenized.with_format("numpy")["input_ids"]:
        pieces.append(np.asarray(row, dtype=np.int32))
        pieces.append(np.array([eos], dtype=np.int32))
    stream = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
    n_full = len(stream) // block_size
    blocks = [stream[i * block_size : (i + 1) * block_size].tolist() for i in range(n_full)]
    if len(stream) % block_size and not drop_last:
        blocks.append(stream[n_full * block_size :].tolist())
    columns: dict[str, list] = {"input_ids": blocks, "block_id": list(range(len(blocks)))}
    if eval_noise_epoch is not None:
        columns[EVAL_NOISE_EPOCH_COLUMN] = [eval_noise_epoch] * len(blocks)
    logger.info("Packed %d tokens from %d documents into %d blocks of %d", len(stream), len(tokenized), len(blocks), block_size)
    return datasets.Dataset.from_dict(columns)


class PackedStream(torch.utils.data.IterableDataset):
    """Streaming path: pack an iterable of documents on the fly (corpora larger than memory).

    Wraps a ``datasets.IterableDataset`` (``load_dataset(..., streaming=True)``). ``set_epoch`` is
    forwarded so a shuffled stream reshuffles each epoch; ``block_id`` counts blocks in stream order
    (mixed with the epoch by the collator). Use with ``--max_steps`` (a stream has no length).
    """

    def __init__(
        self, source: Any, tokenizer: Any, text_column: str, block_size: int, drop_last: bool = False,
        eval_noise_epoch: int | None = None,
    ) -> None:
        super().__init__()
        self.source, self.tokenizer, self.text_column = source, tokenizer, text_column
        self.block_size, self.drop_last, self.eval_noise_epoch = block_size, drop_last, eval_noise_epoch

    def set_epoch(self, epoch: int) -> None:
        """Forward the epoch to a shuffled source stream."""
        if hasattr(self.source, "set_epoch"):
            self.source.set_epoch(epoch)

    def _documents(self) -> Iterator[list[int]]:
        for example in self.source:
            if self.text_column not in example:
                raise ValueError(f"text column {self.text_column!r} not in stream example keys {list(example)}")
            yield self.tokenizer(example[self.text_column], add_special_tokens=False)["input_ids"]

    def _worker_documents(self) -> tuple[Iterator[list[int]], int, int]:
        """This DataLoader worker's documents, with (worker id, number of workers).

        Each worker runs its own copy of this object, so without sharding every worker would pack and
        yield the whole stream (``--dataloader_num_workers N`` = every block N times). A
        ``datasets.IterableDataset`` shards itself across workers by its files (``num_shards``); any
        other iterable is split here, round-robin by document.
        """
        import datasets

        info = torch.utils.data.get_worker_info()
        if info is None or info.num_workers <= 1:
            return self._documents(), 0, 1
        if isinstance(self.source, datasets.IterableDataset):
            return self._documents(), info.id, info.num_workers
        documents = itertools.islice(self._documents(), info.id, None, info.num_workers)
        return documents, info.id, info.num_workers

    def __iter__(self) -> Iterator[dict[str, Any]]:
        documents, worker_id, num_workers = self._worker_documents()
        blocks = pack_token_sequences(documents, self.block_size, self.tokenizer.eos_token_id, self.drop_last)
        for local_id, block in enumerate(blocks):
            # Interleaved ids stay unique across workers (the collator seeds each block's noise from it).
            block_id = local_id * num_workers + worker_id
            item = {"input_ids": block, "block_id": block_id}
            if self.eval_noise_epoch is not None:
                item[EVAL_NOISE_EPOCH_COLUMN] = self.eval_noise_epoch
            yield item


# --------------------------------------------------------------------------------------------
# Word-vector embedding initialisation (--init_embeddings)
# --------------------------------------------------------------------------------------------


def load_word_vectors(path: str) -> tuple[dict[str, np.ndarray], int]:
    """Read a GloVe / word2vec text file: ``word v1 ... vD`` per line, optional ``N D`` header.

    Returns ({word: vector}, D). The first occurrence of a word wins (frequency order).
    """
    vectors: dict[str, np.ndarray] = {}
    dim = None
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            parts = line.rstrip("\n").rstrip().split(" ")
            if line_number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                dim = int(parts[1])  # word2vec header "N D"
                continue
            if len(parts) < 2:
                continue
            word, values = parts[0], parts[1:]
            if dim is None:
                dim = len(values)
            if len(values) != dim:
                raise ValueError(f"{path}:{line_number}: expected {dim} values after the word, found {len(values)}")
            if word not in vectors:
                try:
                    vectors[word] = np.asarray(values, dtype=np.float32)
                except ValueError as err:
                    raise ValueError(f"{path}:{line_number}: not a number in the vector ({err})") from None
                if not np.isfinite(vectors[word]).all():  # NaN/inf (or beyond float32) would poison training
                    raise ValueError(
                        f"--init_embeddings {path} line {line_number}: the vector of {word!r} holds NaN or inf. "
                        "Fix or delete that line (the file is damaged or was written with overflowing values)."
                    )
    if dim is None or not vectors:
        raise ValueError(f"{path}: no word vectors found (expected GloVe/word2vec text format)")
    return vectors, dim


@dataclass
class EmbeddingInitStats:
    """What ``init_embeddings_from_word_vectors`` did (logged, and written to the model card)."""

    vocab_size: int
    found: int
    coverage: float
    vector_dim: int
    d_model: int
    method: str
    scale: float
    token_ids: list[int] = field(default_factory=list, repr=False)


def token_lookup_word(tokenizer: Any, token_id: int) -> str:
    """The word a vocabulary entry stands for: its decoded text, without the byte-level leading
    space (``Ġ``), lower-cased (GloVe 6B is lower-cased)."""
    token = tokenizer.convert_ids_to_tokens(token_id)
    text = tokenizer.convert_tokens_to_string([token])
    return text.strip().lower()


def init_embeddings_from_word_vectors(
    model: Any, tokenizer: Any, path: str, seed: int = 0
) -> EmbeddingInitStats:
    """Overwrite embedding rows of vocabulary tokens found in a word-vector file.

    For every non-special token, the decoded word (byte-level ``Ġ`` marker stripped, lower-cased)
    is looked up. The found vectors V (n x D) are mapped to d_model:

    * D <= d_model: zero-pad to d_model;
    * D > d_model: project with a fixed random matrix with orthonormal columns (QR of a Gaussian
      D x d_model matrix drawn from ``seed``), which keeps dot products inside the projected
      subspace;

    then multiply by one global scale ``s = std / rms(mapped V)`` so the rows have the magnitude of
    the model's own token-embedding initialisation (GloVe entries are ~0.4; ``std`` is
    ``config.token_embedding_std()`` for Forge, ``init_std`` otherwise;
    without rescaling the initialised rows would dominate the tied output layer). One scalar keeps
    the geometry (cosine similarities) of the vectors. Unfound rows keep their random init.
    """
    vectors, dim = load_word_vectors(path)
    embedding = model.get_input_embeddings()
    weight = embedding.weight
    vocab_size, d_model = weight.shape
    special = set(getattr(tokenizer, "all_special_ids", []))
    token_ids, rows = [], []
    for token_id in range(min(vocab_size, len(tokenizer))):
        if token_id in special:
            continue
        word = token_lookup_word(tokenizer, token_id)
        vec = vectors.get(word)
        if vec is not None:
            token_ids.append(token_id)
            rows.append(vec)
    considered = sum(1 for i in range(min(vocab_size, len(tokenizer))) if i not in special)
    coverage = len(token_ids) / max(considered, 1)
    # the magnitude of the model's own token-embedding init (Forge: ForgeConfig.token_embedding_std)
    std_of = getattr(model.config, "token_embedding_std", None)
    init_std = float(std_of() if callable(std_of) else getattr(model.config, "init_std", 0.02))
    if not rows:
        logger.warning("--init_embeddings: no vocabulary token found in %s (coverage 0.0)", path)
        return EmbeddingInitStats(vocab_size, 0, 0.0, dim, d_model, "none", 0.0, [])
    matrix = torch.from_numpy(np.stack(rows)).double()
    if dim <= d_model:
        method = "zero-pad" if dim < d_model else "identity"
        mapped = torch.nn.functional.pad(matrix, (0, d_model - dim))
    else:
        method = "orthonormal-projection"
        mapped = matrix @ projection_matrix(dim, d_model, seed)
    rms = float(mapped.pow(2).mean().sqrt())
    scale = init_std / rms if rms > 0 else 1.0
    with torch.no_grad():
        weight[torch.tensor(token_ids)] = (mapped * scale).to(weight.dtype)
    logger.info(
        "--init_embeddings %s: %d of %d vocabulary tokens found (coverage %.3f), %dd -> %dd by %s, scale %.4g",
        path, len(token_ids), considered, coverage, dim, d_model, method, scale,
    )
    return EmbeddingInitStats(vocab_size, len(token_ids), coverage, dim, d_model, method, scale, token_ids)


def projection_matrix(in_dim: int, out_dim: int, seed: int = 0) -> torch.Tensor:
    """Fixed (in_dim x out_dim) matrix with orthonormal columns, from a seeded Gaussian (QR)."""
    generator = torch.Generator().manual_seed(seed)
    gaussian = torch.randn(in_dim, out_dim, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    return q * torch.sign(torch.diagonal(r))  # sign fix makes the factorisation unique


__all__ = [
    "EmbeddingInitStats",
    "PackedStream",
    "SpanCorruptionCollator",
    "SpanCorruptionEpochCallback",
    "corrupted_lengths",
    "init_embeddings_from_word_vectors",
    "load_word_vectors",
    "pack_dataset",
    "pack_token_sequences",
    "random_spans_noise_mask",
    "sentinel_ids",
    "shift_tokens_right",
    "span_corrupt",
    "token_lookup_word",
]
