"""Unit tests of the pretraining core: span corruption, packing, word-vector init (no training)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recipes.core.pretraining import (
    SpanCorruptionCollator,
    corrupted_lengths,
    init_embeddings_from_word_vectors,
    load_word_vectors,
    pack_dataset,
    pack_token_sequences,
    projection_matrix,
    random_spans_noise_mask,
    span_corrupt,
)

PAD, BOS, EOS, UNK, MASK = 0, 1, 2, 3, 4
NUM_SENTINELS = 100
FIRST_WORD_ID = 5 + NUM_SENTINELS


class StubTokenizer:
    """The slice of a Forge tokenizer the pretraining core uses, with contract ids.

    Words are whitespace-separated; ``Ġ`` marks a leading space as in byte-level BPE.
    """

    pad_token_id, bos_token_id, eos_token_id, unk_token_id = PAD, BOS, EOS, UNK

    def __init__(self, words: list[str] | None = None) -> None:
        self.tokens = ["<pad>", "<s>", "</s>", "<unk>", "<mask>"] + [f"<extra_id_{i}>" for i in range(NUM_SENTINELS)]
        self.tokens += words or []
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.all_special_ids = list(range(FIRST_WORD_ID))

    def __len__(self) -> int:
        return len(self.tokens)

    def convert_tokens_to_ids(self, token: str) -> int:
        return self.index.get(token, UNK)

    def convert_ids_to_tokens(self, token_id: int) -> str:
        return self.tokens[token_id]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return "".join(tokens).replace("Ġ", " ")

    def __call__(self, texts, add_special_tokens=True):
        # A "tokenizer" mapping each character to an id, enough for packing tests.
        def encode(text: str) -> list[int]:
            return [FIRST_WORD_ID + ord(c) % 50 for c in text]

        return {"input_ids": encode(texts) if isinstance(texts, str) else [encode(t) for t in texts]}


def sentinel(i: int) -> int:
    return 5 + i


@pytest.fixture
def collator() -> SpanCorruptionCollator:
    return SpanCorruptionCollator(StubTokenizer(), seed=0)


# ---------------------------------------------------------------- collator, hand-checked


def test_span_corrupt_hand_checked():
    block = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]
    mask = np.array([0, 0, 1, 1, 0, 0, 0, 1, 0, 0], dtype=bool)
    inputs, labels = span_corrupt(block, mask, [sentinel(0), sentinel(1)], EOS)
    assert inputs == [10, 11, sentinel(0), 14, 15, 16, sentinel(1), 18, 19, EOS]
    assert labels == [sentinel(0), 12, 13, sentinel(1), 17, EOS]


def test_collator_batch_hand_checked(collator):
    """Fixed mask: inputs, attention mask, labels (-100 on padding) and decoder inputs exactly."""
    masks = {
        0: np.array([0, 0, 1, 1, 0, 0, 0, 1], dtype=bool),
        1: np.array([0, 1, 0, 0, 1, 1], dtype=bool),
    }
    collator.noise_mask = lambda length, block_id, epoch=None: masks[block_id]
    batch = collator(
        [
            {"input_ids": [10, 11, 12, 13, 14, 15, 16, 17], "block_id": 0},
            {"input_ids": [20, 21, 22, 23, 24, 25], "block_id": 1},
        ]
    )
    s0, s1 = sentinel(0), sentinel(1)
    assert batch["input_ids"].tolist() == [
        [10, 11, s0, 14, 15, 16, s1, EOS],
        [20, s0, 22, 23, s1, EOS, PAD, PAD],
    ]
    assert batch["attention_mask"].tolist() == [[1] * 8, [1] * 6 + [0, 0]]
    assert batch["labels"].tolist() == [
        [s0, 12, 13, s1, 17, EOS],
        [s0, 21, s1, 24, 25, EOS],
    ]
    # the model's shift: decoder start <s>, then labels shifted right
    assert batch["decoder_input_ids"].tolist() == [
        [BOS, s0, 12, 13, s1, 17],
        [BOS, s0, 21, s1, 24, 25],
    ]


def test_collator_pads_labels_with_ignore_index(collator):
    batch = collator([{"input_ids": list(range(200, 240)), "block_id": 0}, {"input_ids": [200, 201, 202], "block_id": 1}])
    short = batch["labels"][1].tolist()
    n = corrupted_lengths(3)[1]
    assert short[n:] == [-100] * (len(short) - n)
    # decoder inputs: -100 becomes pad
    assert (batch["decoder_input_ids"] == -100).sum() == 0


def test_t5_mask_structure():
    """Starts with a kept token, ends inside a noise span, sentinels appear in order."""
    rng = np.random.default_rng(1)
    for length in (2, 5, 17, 64, 512):
        mask = random_spans_noise_mask(length, 0.15, 3.0, rng)
        assert mask.shape == (length,)
        assert not mask[0] and mask[-1]
        assert mask.sum() == corrupted_lengths(length)[1] - 1 - _num_spans(mask)


def _num_spans(mask: np.ndarray) -> int:
    return int(mask[0]) + int(np.sum(mask[1:] & ~mask[:-1]))


def test_corruption_is_lossless_and_lengths_fixed(collator):
    """Re-inserting label spans at the sentinels gives back the block; lengths match corrupted_lengths."""
    rng = np.random.default_rng(0)
    for block_id in range(50):
        length = int(rng.integers(2, 300))
        block = rng.integers(FIRST_WORD_ID, 1000, size=length).tolist()
        mask = collator.noise_mask(length, block_id)
        inputs, labels = span_corrupt(block, mask, collator.sentinels_for(length), EOS)
        assert (len(inputs), len(labels)) == corrupted_lengths(length)
        spans, current = {}, None
        for token in labels[:-1]:
            if sentinel(0) <= token < FIRST_WORD_ID:
                current = token
                spans[current] = []
            else:
                spans[current].append(token)
        restored = []
        for token in inputs[:-1]:
            restored.extend(spans[token] if sentinel(0) <= token < FIRST_WORD_ID else [token])
        assert restored == block
        sentinels_in_order = [t for t in inputs if sentinel(0) <= t < FIRST_WORD_ID]
        assert sentinels_in_order == [sentinel(i) for i in range(len(sentinels_in_order))]


def test_noise_density_and_mean_span_length_match_settings():
    rng = np.random.default_rng(0)
    for density, mean_span in ((0.15, 3.0), (0.3, 8.0)):
        noise, spans, per_position = 0, 0, np.zeros(512)
        for _ in range(1000):
            mask = random_spans_noise_mask(512, density, mean_span, rng)
            noise += mask.sum()
            spans += _num_spans(mask)
            per_position += mask
        assert abs(noise / (1000 * 512) - density) < 0.005
        assert abs(noise / spans - mean_span) < 0.1 * mean_span
        # spans are spread over the block, not clustered: every region is noised at about the density
        interior = per_position[50:-50] / 1000
        assert abs(interior.mean() - density) < 0.02 and interior.min() > density / 2


def test_masks_depend_only_on_block_seed_epoch(collator):
    a = collator.noise_mask(128, block_id=7)
    assert np.array_equal(a, collator.noise_mask(128, block_id=7))
    assert not np.array_equal(a, collator.noise_mask(128, block_id=8))
    collator.epoch = 1
    assert not np.array_equal(a, collator.noise_mask(128, block_id=7))
    assert np.array_equal(a, collator.noise_mask(128, block_id=7, epoch=0))  # pinned eval epoch


def test_split_batch_equals_whole_batch(collator):
    """2 processes x b collate the same rows as 1 process x 2b (what the DDP equivalence needs)."""
    features = [{"input_ids": list(range(300 + i, 340 + i)), "block_id": i} for i in range(4)]
    whole = collator(features)
    halves = [collator(features[:2]), collator(features[2:])]
    for key in whole:
        assert torch.equal(whole[key], torch.cat([h[key] for h in halves]))


def test_missing_sentinels_is_a_clear_error():
    tok = StubTokenizer()
    tok.index = {k: v for k, v in tok.index.items() if not k.startswith("<extra_id_1")}
    collator = SpanCorruptionCollator(tok)
    with pytest.raises(ValueError, match="sentinel"):
        collator([{"input_ids": list(range(500, 1000)), "block_id": 0}])


# ---------------------------------------------------------------- packing


def test_packing_loses_and_duplicates_nothing():
    rng = np.random.default_rng(0)
    docs = [rng.integers(10, 99, size=int(rng.integers(0, 40))).tolist() for _ in range(60)]
    expected = [t for doc in docs for t in doc + [EOS]]
    for block_size in (1, 7, 32, 10_000):
        blocks = list(pack_token_sequences(docs, block_size, EOS))
        assert [t for b in blocks for t in b] == expected
        assert all(len(b) == block_size for b in blocks[:-1])
        assert 0 < len(blocks[-1]) <= block_size
        dropped = list(pack_token_sequences(docs, block_size, EOS, drop_last=True))
        assert all(len(b) == block_size for b in dropped)
        assert dropped == blocks[: len(expected) // block_size]


def test_pack_dataset_matches_stream_packing():
    import datasets

    texts = ["hello world", "", "a much longer document " * 5, "x"]
    ds = datasets.Dataset.from_dict({"text": texts, "other": [1, 2, 3, 4]})
    tok = StubTokenizer()
    packed = pack_dataset(ds, tok, "text", block_size=16)
    expected = list(pack_token_sequences(tok(texts)["input_ids"], 16, EOS))
    assert packed["input_ids"] == expected
    assert packed["block_id"] == list(range(len(expected)))
    assert len(pack_dataset(ds, tok, "text", block_size=16, drop_last=True)) == len(expected) - 1
    with pytest.raises(ValueError, match="--text_column"):
        pack_dataset(ds, tok, "body", block_size=16)


# ---------------------------------------------------------------- word vectors


class _StubModel(torch.nn.Module):
    def __init__(self, vocab: int, d_model: int) -> None:
        super().__init__()
        self.config = type("C", (), {"init_std": 0.02})()
        self.shared = torch.nn.Embedding(vocab, d_model)

    def get_input_embeddings(self):
        return self.shared


@pytest.mark.parametrize("header", [False, True])
def test_init_embeddings_pads_scales_and_reports_coverage(tmp_path, header):
    path = tmp_path / "vec.txt"
    lines = ["the 1 2 3", "cat -1 0.5 2", "dog 0 0 1"]
    path.write_text(("3 3\n" if header else "") + "\n".join(lines) + "\n", encoding="utf-8")
    vectors, dim = load_word_vectors(str(path))
    assert dim == 3 and set(vectors) == {"the", "cat", "dog"}

    tok = StubTokenizer(["Ġthe", "The", "Ġcat", "zebra", "Ġdo"])
    model = _StubModel(len(tok), 8)
    before = model.shared.weight.detach().clone()
    stats = init_embeddings_from_word_vectors(model, tok, str(path))
    ids = [tok.index[t] for t in ("Ġthe", "The", "Ġcat")]
    assert stats.token_ids == ids and stats.found == 3
    assert stats.coverage == pytest.approx(3 / 5)
    raw = torch.tensor([[1, 2, 3], [1, 2, 3], [-1, 0.5, 2]], dtype=torch.float64)
    padded = torch.nn.functional.pad(raw, (0, 5))
    expected = padded * (0.02 / padded.pow(2).mean().sqrt())
    torch.testing.assert_close(model.shared.weight[ids].double(), expected, rtol=1e-5, atol=1e-7)
    untouched = [i for i in range(len(tok)) if i not in ids]
    assert torch.equal(model.shared.weight[untouched], before[untouched])


def test_init_embeddings_projects_larger_vectors(tmp_path):
    path = tmp_path / "vec.txt"
    rng = np.random.default_rng(0)
    path.write_text("\n".join(f"w{i} " + " ".join(f"{x:.5f}" for x in rng.normal(size=16)) for i in range(4)))
    tok = StubTokenizer([f"Ġw{i}" for i in range(4)])
    model = _StubModel(len(tok), 8)
    stats = init_embeddings_from_word_vectors(model, tok, str(path), seed=3)
    assert stats.method == "orthonormal-projection" and stats.coverage == 1.0
    q = projection_matrix(16, 8, seed=3)
    torch.testing.assert_close(q.T @ q, torch.eye(8, dtype=torch.float64))
    vectors, _ = load_word_vectors(str(path))
    raw = torch.tensor(np.stack([vectors[f"w{i}"] for i in range(4)]), dtype=torch.float64) @ q
    expected = raw * (0.02 / raw.pow(2).mean().sqrt())
    torch.testing.assert_close(model.shared.weight[FIRST_WORD_ID:].double(), expected, rtol=1e-5, atol=1e-7)


def test_word_vector_file_errors_name_the_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("the 1 2 3\ncat 1 2\n")
    with pytest.raises(ValueError, match="bad.txt:2"):
        load_word_vectors(str(path))


def test_streaming_path_packs_like_the_map_path():
    """PackedStream over a streamed dataset yields the same blocks (and ids) as global packing."""
    import datasets

    from recipes.core.pretraining import PackedStream

    texts = [f"document number {i} " * (i % 4 + 1) for i in range(12)]
    stream = datasets.Dataset.from_dict({"text": texts}).to_iterable_dataset(num_shards=1)
    tok = StubTokenizer()
    items = list(PackedStream(stream, tok, "text", block_size=16))
    expected = list(pack_token_sequences(tok(texts)["input_ids"], 16, EOS))
    assert [item["input_ids"] for item in items] == expected
    assert [item["block_id"] for item in items] == list(range(len(expected)))
    batch = SpanCorruptionCollator(tok)(items[:3])  # streamed items collate like map-style ones
    assert batch["input_ids"].shape[0] == 3


@pytest.mark.parametrize("source_kind", ["list", "datasets-2-shards"])
def test_streaming_with_dataloader_workers_yields_each_block_once(source_kind):
    """Issue 15: --dataloader_num_workers N must not yield every block N times, and block ids (the noise
    seed) stay unique across workers."""
    import datasets

    from recipes.core.pretraining import PackedStream

    texts = [f"doc {i} " + "x" * (i % 7) * 5 for i in range(30)]
    tok = StubTokenizer()
    if source_kind == "list":
        source = [{"text": t} for t in texts]
    else:
        source = datasets.Dataset.from_dict({"text": texts}).to_iterable_dataset(num_shards=2)
    stream = PackedStream(source, tok, "text", block_size=16)
    single = [tuple(item["input_ids"]) for item in stream]
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2)
    items = list(loader)
    ids = [int(item["block_id"]) for item in items]
    assert len(ids) == len(set(ids)), "two workers gave the same block id"
    packed_tokens = sorted(int(t) for item in items for t in item["input_ids"])
    assert packed_tokens == sorted(t for block in single for t in block), "blocks lost or duplicated"
    assert len(items) <= len(single) + 1  # each worker may end on one partial block
