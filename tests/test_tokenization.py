"""Forge tokenizers: lossless round trip, slow == fast, saved folders, QA/SRL alignment features, trainer CLI.

One small vocabulary (3000 tokens, trained on ~2 MB of English + ~1 MB of Chinese from ../shared/data) is shared
by the whole module; every other tokenizer here is trained on a few hundred KB.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

import tokenization
from tokenization import ForgeTokenizer, ForgeTokenizerFast, add_task_tokens
from tokenization.tokenization_forge import bytes_to_unicode, pretokenize
from tokenization.train import iter_file_texts, main as train_main, save_tokenizer, train_tokenizer

VOCAB_SIZE = 3000
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<mask>"]
HYPOTHESIS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))

# Pieces hypothesis strings are built from, on top of arbitrary code points: the cases the issue names.
PIECES = [
    "👩\u200d💻", "👨\u200d👩\u200d👧\u200d👦", "🏳️\u200d🌈", "👍🏽", "\U0001F1EB\U0001F1F7", "❤️",  # emoji, ZWJ, flags
    "e\u0301", "a\u0308\u0323", "\u0301", "ñ", "é",  # combining marks, precomposed
    "\t", "\n", "\r\n", "\r", "  ", "   ", " ", "\u00a0", "\u3000", "\u2028", "\x0b\x0c",  # whitespace
    "\x00", "\x01", "\x1b", "\x1f", "\x7f", "\x85", "\u200b", "\ufeff", "\ufffd",  # control / format chars
    "北京", "三环路", "。", "，", "「", "」", "東京タワー", "ｶﾀｶﾅ", "한국어", "ㄅㄆ", "𠀋", "\U0002ebf0",  # CJK
    "don't", "'LL", "'s", "Hello", "WORLD", "x", "123", "4.5", "١٢٣", "１２３", "Ω", "Привет", "مرحبا",
    "<mask>", "</s>", "<pad>", "<extra_id_7>", "<extra_id_77>", "<s", "extra_id_1>",  # special-token strings
]
mixed_text = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=4)), max_size=24).map("".join)
any_text = st.one_of(st.text(max_size=60), mixed_text)


# --- fixtures --------------------------------------------------------------------------------------------------------
def _read_jsonl(path: Path, limit_bytes: int) -> list[str]:
    texts, size = [], 0
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            texts.append(json.loads(line)["text"])
            size += len(line.encode("utf-8"))
            if size >= limit_bytes:
                break
    return texts


@pytest.fixture(scope="session")
def tokenizer_dir(shared_data: Path, tmp_path_factory) -> Path:
    """A 3000-token vocabulary trained on the first ~2 MB of English and ~1 MB of Chinese train text, saved."""
    texts = _read_jsonl(shared_data / "pretrain" / "train.jsonl", 2_000_000)
    texts += _read_jsonl(shared_data / "pretrain_zh" / "train.jsonl", 1_000_000)
    tok = train_tokenizer(texts, vocab_size=VOCAB_SIZE, show_progress=False)
    folder = tmp_path_factory.mktemp("forge_tokenizer")
    save_tokenizer(tok, folder)
    return folder


@pytest.fixture(scope="session")
def fast(tokenizer_dir: Path) -> ForgeTokenizerFast:
    return ForgeTokenizerFast.from_pretrained(tokenizer_dir)


@pytest.fixture(scope="session")
def slow(tokenizer_dir: Path) -> ForgeTokenizer:
    return ForgeTokenizer.from_pretrained(tokenizer_dir)


def _token_bytes(tokenizer: ForgeTokenizerFast, token_id: int) -> bytes:
    decoder = {ch: b for b, ch in bytes_to_unicode().items()}
    return bytes(decoder[ch] for ch in tokenizer.convert_ids_to_tokens(token_id))


def _piece_spans(tokenizer: ForgeTokenizerFast, text: str) -> list[tuple[int, int]]:
    """Character spans of the pre-tokenizer pieces: added tokens split the text first, then the regex."""
    pattern = re.compile("|".join(re.escape(t) for t in sorted(tokenizer.get_added_vocab(), key=len, reverse=True)))
    spans, last = [], 0
    for segment_start, segment_end in [(m.start(), m.end()) for m in pattern.finditer(text)] + [(len(text), len(text))]:
        position = last
        for piece in pretokenize(text[last:segment_start]):
            spans.append((position, position + len(piece)))
            position += len(piece)
        spans.append((segment_start, segment_end))
        last = segment_end
    return spans


def _check_offsets(tokenizer: ForgeTokenizerFast, text: str, ids: list[int], offsets: list[tuple[int, int]]) -> None:
    """Each token's (trimmed) offsets point at the characters its bytes came from."""
    special = set(tokenizer.all_special_ids)
    for token_id, (start, end) in zip(ids, offsets):
        if token_id in special:  # added by the template: (0, 0); written in the text: its own span
            assert (start, end) == (0, 0) or text[start:end] == tokenizer.convert_ids_to_tokens(token_id)
            continue
        assert 0 <= start <= end <= len(text)
        raw = _token_bytes(tokenizer, token_id)
        try:
            piece = raw.decode("utf-8")
        except UnicodeDecodeError:  # part of a multi-byte character: the span covers the whole character(s)
            assert end > start and raw.strip(b" ") in text[start:end].encode("utf-8")
            continue
        # trim_offsets drops the spaces a byte-level token carries ("Ġthe" -> "the")
        assert text[start:end] == piece.strip(" "), (piece, text[start:end])


# --- vocabulary layout -----------------------------------------------------------------------------------------------
def test_special_tokens_come_first_in_contract_order(fast, slow):
    for tok in (fast, slow):
        assert tok.convert_ids_to_tokens(list(range(5))) == SPECIALS
        assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id, tok.mask_token_id) == (
            0, 1, 2, 3, 4)
        assert tok.convert_tokens_to_ids([f"<extra_id_{i}>" for i in (0, 1, 99)]) == [5, 6, 104]
        assert [str(t) for t in tok.extra_special_tokens] == [f"<extra_id_{i}>" for i in range(100)]
        assert set(range(105)) == set(tok.all_special_ids)
        assert len(tok) == VOCAB_SIZE
    assert sorted(fast.convert_ids_to_tokens(list(range(105, 105 + 256)))) == sorted(bytes_to_unicode().values())


def test_blank_tokenizer_is_lossless_and_trainable():
    blank = ForgeTokenizerFast()
    assert len(blank) == 105 + 256
    text = "blank 空白 👩\u200d💻"
    ids = blank(text)["input_ids"]
    assert len(ids) == len(text.encode("utf-8")) + 1 and ids[-1] == 2
    assert blank.decode(ids, skip_special_tokens=True) == text
    trained = blank.train_new_from_iterator(["hello world"] * 50 + ["你好世界"] * 50, vocab_size=400, show_progress=False)
    assert isinstance(trained, ForgeTokenizerFast)
    assert trained.convert_ids_to_tokens(list(range(6))) == SPECIALS + ["<extra_id_0>"]
    assert len(trained("hello world")["input_ids"]) < len(blank("hello world")["input_ids"])


def test_num_sentinels_option_and_too_small_vocab():
    tok = train_tokenizer(["some text here"] * 20, vocab_size=300, num_sentinels=3, show_progress=False)
    assert tok.convert_ids_to_tokens(list(range(8))) == SPECIALS + ["<extra_id_0>", "<extra_id_1>", "<extra_id_2>"]
    assert tok.convert_tokens_to_ids("<extra_id_3>") == tok.unk_token_id
    with pytest.raises(ValueError, match="vocab_size=200 is too small"):
        train_tokenizer(["x"], vocab_size=200, show_progress=False)


# --- property tests: lossless, slow == fast --------------------------------------------------------------------------
@HYPOTHESIS
@given(text=any_text)
def test_round_trip_and_slow_equals_fast(fast, slow, text):
    ids = fast(text, add_special_tokens=False)["input_ids"]
    assert slow(text, add_special_tokens=False)["input_ids"] == ids
    assert fast.decode(ids) == text
    assert slow.decode(ids) == text
    with_eos = fast(text)["input_ids"]
    assert with_eos == ids + [fast.eos_token_id] == slow(text)["input_ids"]
    if not any(s in text for s in SPECIALS + ["<extra_id_"]):
        assert fast.decode(with_eos, skip_special_tokens=True) == text
        assert slow.decode(with_eos, skip_special_tokens=True) == text
        assert fast.unk_token_id not in ids  # every byte has a token


@HYPOTHESIS
@given(text=any_text)
def test_pretokenizer_regex_agrees_between_engines(fast, text):
    """The Rust Split and Python `re` cut every string at the same places (explicit ranges, no \\p{..})."""
    spans = [span for _, span in fast.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)]
    pieces = pretokenize(text)
    assert "".join(pieces) == text
    starts = list(itertools.accumulate([0] + [len(p) for p in pieces]))
    assert spans == list(zip(starts[:-1], starts[1:]))


@HYPOTHESIS
@given(ids=st.lists(st.integers(min_value=0, max_value=VOCAB_SIZE - 1), max_size=30), skip=st.booleans())
def test_decode_of_arbitrary_ids_matches(fast, slow, ids, skip):
    """Any id sequence (partial UTF-8 included) decodes to the same string, U+FFFD for broken bytes."""
    assert slow.decode(ids, skip_special_tokens=skip) == fast.decode(ids, skip_special_tokens=skip)


@pytest.mark.parametrize("corpus, n_docs", [("pretrain", 40), ("pretrain_zh", 4)])
def test_real_text_round_trip_and_slow_equals_fast(fast, slow, shared_data, corpus, n_docs):
    docs = _read_jsonl(shared_data / corpus / "validation.jsonl", 10**9)[:n_docs]
    for doc in docs:
        doc = doc[:4000]
        ids = fast(doc, add_special_tokens=False)["input_ids"]
        assert slow(doc, add_special_tokens=False)["input_ids"] == ids
        assert fast.decode(ids) == doc == slow.decode(ids)
    batch = fast(docs[:4], add_special_tokens=True)["input_ids"]
    assert [fast.decode(ids, skip_special_tokens=True) for ids in batch] == docs[:4]
    assert fast.batch_decode(batch, skip_special_tokens=True) == slow.batch_decode(batch, skip_special_tokens=True)


def test_vocabulary_compresses_both_languages(fast):
    english = "The city council approved the new budget for the school district."
    chinese = "北京三环路全长48.3公里，是北京市城区的一条环形城市快速路。"
    assert len(fast.tokenize(english)) < 0.3 * len(english.encode("utf-8"))
    assert len(fast.tokenize(chinese)) < 0.5 * len(chinese.encode("utf-8"))


# --- special tokens in text, pairs, targets, truncation, padding ----------------------------------------------------
def test_special_tokens_in_text_match_whole(fast, slow):
    text = "a <mask> b<extra_id_3></s>c"
    ids = fast(text, add_special_tokens=False)["input_ids"]
    assert ids == slow(text, add_special_tokens=False)["input_ids"]
    assert 4 in ids and 8 in ids and 2 in ids
    assert fast.decode(ids) == text
    assert fast.decode(ids, skip_special_tokens=True) == "a  bc"


def test_pair_target_truncation_padding_match_slow(fast, slow):
    question, context = "Who wrote it?", "It was written by 曹雪芹 in the 18th century. " * 6
    for kwargs in [{}, {"truncation": "only_second", "max_length": 40}, {"padding": "max_length", "max_length": 90},
                   {"truncation": "longest_first", "max_length": 12}]:
        f, s = fast(question, context, **kwargs), slow(question, context, **kwargs)
        assert f["input_ids"] == s["input_ids"] and f["attention_mask"] == s["attention_mask"], kwargs
    q_ids = fast(question, add_special_tokens=False)["input_ids"]
    c_ids = fast(context, add_special_tokens=False)["input_ids"]
    assert fast(question, context)["input_ids"] == q_ids + [2] + c_ids + [2]  # A </s> B </s>, no <s>
    enc = fast("source text", text_target="target 文本")
    assert enc["labels"] == fast("target 文本", add_special_tokens=False)["input_ids"] + [2]
    assert slow("source text", text_target="target 文本")["labels"] == enc["labels"]
    batch = fast(["a b c d", "e"], padding=True)
    assert batch["input_ids"][1][2:] == [0, 0, 0] and batch["attention_mask"][1] == [1, 1, 0, 0, 0]
    assert batch["input_ids"] == slow(["a b c d", "e"], padding=True)["input_ids"]


# --- offsets, word_ids, sequence_ids, stride windows (fast only) ----------------------------------------------------
@HYPOTHESIS
@given(text=any_text)
def test_offsets_and_word_ids_point_into_text(fast, text):
    enc = fast(text, return_offsets_mapping=True)
    _check_offsets(fast, text, enc["input_ids"], enc["offset_mapping"])
    spans = _piece_spans(fast, text)
    specials = set(fast.all_special_ids)
    for token_id, word, (start, end) in zip(enc["input_ids"], enc.word_ids(), enc["offset_mapping"]):
        if token_id in specials:
            continue
        # each token lies inside one pre-tokenizer piece (whitespace-only tokens are trimmed to an empty span)
        assert word is not None
        assert any(a <= start and end <= b for a, b in spans) or start == end


def test_pair_offsets_and_sequence_ids(fast):
    question = "Where is  Paris?"
    context = "Paris is the capital of France. 北京是中国的首都。 Emoji 👩\u200d💻 end."
    enc = fast(question, context, return_offsets_mapping=True)
    seq = enc.sequence_ids()
    eos_positions = [i for i, t in enumerate(enc["input_ids"]) if t == 2]
    assert seq[eos_positions[0]] is None and seq[-1] is None and len(eos_positions) == 2
    assert set(seq[: eos_positions[0]]) == {0} and set(seq[eos_positions[0] + 1 : -1]) == {1}
    for part, text in ((0, question), (1, context)):
        idx = [i for i, s in enumerate(seq) if s == part]
        _check_offsets(fast, text, [enc["input_ids"][i] for i in idx], [enc["offset_mapping"][i] for i in idx])
    paris = [i for i, s in enumerate(seq) if s == 1 and enc["offset_mapping"][i][0] < 5]
    assert context[enc["offset_mapping"][paris[0]][0] : enc["offset_mapping"][paris[-1]][1]] == "Paris"


def test_stride_overflow_windows_cover_the_context(fast, shared_data):
    question = "What is this article about?"
    context = _read_jsonl(shared_data / "pretrain" / "validation.jsonl", 10**9)[0][:1500]
    stride, max_length = 16, 64
    enc = fast(question, context, truncation="only_second", max_length=max_length, stride=stride,
               return_overflowing_tokens=True, return_offsets_mapping=True)
    full = fast(context, add_special_tokens=False)["input_ids"]
    assert len(enc["input_ids"]) > 3 and set(enc["overflow_to_sample_mapping"]) == {0}
    windows = []
    for i, ids in enumerate(enc["input_ids"]):
        assert len(ids) <= max_length
        seq = enc.sequence_ids(i)
        ctx = [k for k, s in enumerate(seq) if s == 1]
        q = [k for k, s in enumerate(seq) if s == 0]
        assert fast.decode([ids[k] for k in q]) == question
        _check_offsets(fast, context, [ids[k] for k in ctx], [enc["offset_mapping"][i][k] for k in ctx])
        windows.append([ids[k] for k in ctx])
    for prev, nxt in zip(windows, windows[1:]):
        assert prev[-stride:] == nxt[:stride]  # consecutive windows overlap by exactly `stride` tokens
    rebuilt = windows[0] + [t for w in windows[1:] for t in w[stride:]]
    assert rebuilt == full


def test_pre_split_words_with_leading_spaces_match_running_text(fast, slow):
    """SRL/NER: give words after the first a leading space and ids equal those of the running text."""
    words = ["The", "cat", "sat", "on", "the", "mat", "."]
    text = "The cat sat on the mat ."
    spaced = [w if i == 0 else " " + w for i, w in enumerate(words)]
    enc = fast(spaced, is_split_into_words=True)
    assert enc["input_ids"] == fast(text)["input_ids"] == slow(spaced, is_split_into_words=True)["input_ids"]
    word_ids = enc.word_ids()
    assert word_ids[-1] is None and sorted(set(word_ids[:-1])) == list(range(len(words)))
    for w in range(len(words)):
        ids = [t for t, wid in zip(enc["input_ids"], word_ids) if wid == w]
        assert fast.decode(ids) == spaced[w]


# --- saved folders ---------------------------------------------------------------------------------------------------
def test_saved_folder_loads_with_auto_and_slow(tokenizer_dir, fast):
    files = set(os.listdir(tokenizer_dir))
    assert {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
            "tokenization_forge.py", "tokenization_forge_fast.py"} <= files
    config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "ForgeTokenizerFast"
    assert config["auto_map"]["AutoTokenizer"] == [
        "tokenization_forge.ForgeTokenizer", "tokenization_forge_fast.ForgeTokenizerFast"]
    auto = AutoTokenizer.from_pretrained(tokenizer_dir)
    assert type(auto) is ForgeTokenizerFast
    slow = ForgeTokenizer.from_pretrained(tokenizer_dir)
    text = "Round trip 往返 ✓"
    assert auto(text)["input_ids"] == slow(text)["input_ids"] == fast(text)["input_ids"]


def test_auto_tokenizer_registered_for_forge_config(tokenizer_dir, tmp_path):
    modeling = pytest.importorskip("modeling")
    from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING

    assert TOKENIZER_MAPPING[modeling.ForgeConfig] is ForgeTokenizerFast
    folder = tmp_path / "with_config"
    shutil.copytree(tokenizer_dir, folder)
    modeling.ForgeConfig(vocab_size=VOCAB_SIZE).save_pretrained(folder)
    assert type(AutoTokenizer.from_pretrained(folder)) is ForgeTokenizerFast


FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    # This interpreter must not see the repository: drop the editable-install finder (-I already drops cwd/env).
    sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")
                        and "__editable__" not in type(f).__module__]
    try:
        import tokenization
        importable = True
    except ImportError:
        importable = False
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=True)
    texts = json.loads(sys.argv[2])
    print(json.dumps({"importable": importable, "class": type(tok).__name__, "module": type(tok).__module__,
                      "ids": [tok(t)["input_ids"] for t in texts],
                      "decoded": [tok.decode(tok(t)["input_ids"], skip_special_tokens=True) for t in texts]}))
    """
)


def test_fresh_process_trust_remote_code_gives_same_ids(tokenizer_dir, fast, tmp_path):
    folder = tmp_path / "copied_folder"
    shutil.copytree(tokenizer_dir, folder)
    texts = ["Hello, world!", "北京三环路全长48.3公里。", "tab\there  spaces 👩\u200d💻 e\u0301"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), TOKENIZERS_PARALLELISM="false")
    result = subprocess.run([sys.executable, "-I", "-c", FRESH_PROCESS, str(folder), json.dumps(texts)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["importable"] is False, "the subprocess could import the repository's tokenization package"
    assert out["class"] == "ForgeTokenizerFast" and out["module"].startswith("transformers_modules")
    assert out["ids"] == [fast(t)["input_ids"] for t in texts]
    assert out["decoded"] == texts


# --- task tokens -----------------------------------------------------------------------------------------------------
def test_add_task_tokens_resizes_model_and_survives_save(tokenizer_dir, tmp_path):
    modeling = pytest.importorskip("modeling")
    tok = ForgeTokenizerFast.from_pretrained(tokenizer_dir)
    config = modeling.ForgeConfig(vocab_size=len(tok), d_model=16, encoder_layers=1, decoder_layers=1,
                                  encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                                  decoder_ffn_dim=32, max_position_embeddings=64)
    model = modeling.ForgeForConditionalGeneration(config)
    ids = add_task_tokens(tok, model, ["<pred>", "</pred>"])
    assert ids == [VOCAB_SIZE, VOCAB_SIZE + 1]
    assert add_task_tokens(tok, model, ["<pred>", "<mask>"]) == [VOCAB_SIZE, 4]  # existing tokens keep their ids
    assert model.get_input_embeddings().num_embeddings >= len(tok) == VOCAB_SIZE + 2
    text = "The <pred>sat</pred> cat"
    enc = tok(text, add_special_tokens=False)["input_ids"]
    assert VOCAB_SIZE in enc and VOCAB_SIZE + 1 in enc and tok.decode(enc) == text
    assert tok.decode(enc, skip_special_tokens=True) == "The sat cat"
    tok.save_pretrained(tmp_path)
    for cls in (ForgeTokenizerFast, ForgeTokenizer):
        again = cls.from_pretrained(tmp_path)
        assert again(text, add_special_tokens=False)["input_ids"] == enc, cls
        assert again.convert_tokens_to_ids(["<pred>", "</pred>", "<extra_id_0>"]) == ids + [5]
    with pytest.raises(ValueError, match="printable ASCII"):
        add_task_tokens(tok, None, ["<prédicat>"])


# --- trainer ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_corpus(shared_data, tmp_path_factory) -> dict[str, Path]:
    """The same ~200 KB of English as .jsonl, .txt, .csv, .parquet and .json (array)."""
    texts = _read_jsonl(shared_data / "pretrain" / "validation.jsonl", 200_000)
    folder = tmp_path_factory.mktemp("corpus")
    paths = {suffix: folder / f"corpus.{suffix}" for suffix in ("jsonl", "txt", "csv", "parquet", "json")}
    paths["jsonl"].write_text("".join(json.dumps({"body": t}, ensure_ascii=False) + "\n" for t in texts))
    paths["txt"].write_text("\n".join(texts) + "\n")
    paths["json"].write_text(json.dumps([{"body": t} for t in texts], ensure_ascii=False))
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    with open(paths["csv"], "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "body"])
        writer.writeheader()
        writer.writerows({"id": i, "body": t} for i, t in enumerate(texts))
    pq.write_table(pa.table({"body": texts}), paths["parquet"])
    return paths


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "parquet", "json"])
def test_train_main_on_column_formats(small_corpus, tmp_path, suffix):
    out = tmp_path / "tok"
    tok = train_main(["--train_file", str(small_corpus[suffix]), "--text_column", "body", "--vocab_size", "800",
                      "--output_dir", str(out), "--no_progress", "--max_samples", "50"])
    assert len(tok) == 800
    assert type(AutoTokenizer.from_pretrained(out)) is ForgeTokenizerFast
    text = "A sentence to check."
    assert ForgeTokenizer.from_pretrained(out)(text)["input_ids"] == tok(text)["input_ids"]


def test_train_added_tokens_stay_whole_within_the_vocabulary_size(shared_data, tmp_path):
    """--added_tokens: DialogSum's speaker tags become one ordinary token each (the pre-tokenizer would cut
    "#Person1#" into four), inside --vocab_size; slow and fast agree, decoding keeps the text, a saved folder keeps them."""
    corpus = tmp_path / "dialogues.jsonl"
    with open(shared_data / "summarization" / "train.jsonl", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in itertools.islice(handle, 300)]
    corpus.write_text("".join(json.dumps({"document": r["document"]}) + "\n" for r in rows))
    tags = ["#Person1#", "#Person2#"]
    out = tmp_path / "tok"
    tok = train_main(["--train_file", str(corpus), "--text_column", "document", "--vocab_size", "1000",
                      "--output_dir", str(out), "--no_progress", "--added_tokens", *tags])
    assert len(tok) == 1000
    text = "#Person1#: Are you free?\n#Person2#: Yes. #Person1# asks #Person2# out;#Person2#."
    plain = train_tokenizer([r["document"] for r in rows], vocab_size=1000, show_progress=False)
    assert plain.tokenize(" #Person2#")[-3:] == ["Person", "2", "#"]
    pieces = tok.tokenize(text)
    assert pieces.count("#Person1#") == 2 and pieces.count("#Person2#") == 3 and "Person" not in pieces
    ids = tok(text)["input_ids"]
    assert len(ids) < len(plain(text)["input_ids"])
    assert tok.decode(ids, skip_special_tokens=True) == text  # ordinary tokens: kept when specials are skipped
    for cls in (ForgeTokenizerFast, ForgeTokenizer, AutoTokenizer):
        again = cls.from_pretrained(out)
        assert again(text)["input_ids"] == ids, cls
        assert again.decode(ids, skip_special_tokens=True) == text, cls
    with pytest.raises(ValueError, match="printable ASCII without spaces"):
        train_main(["--train_file", str(corpus), "--text_column", "document", "--vocab_size", "1000",
                    "--output_dir", str(tmp_path / "bad"), "--no_progress", "--added_tokens", "#Person 1#"])
    assert not (tmp_path / "bad").exists()  # refused before training, nothing written


def test_train_cli_on_txt_refuses_overwrite(small_corpus, tmp_path):
    out = tmp_path / "tok"
    cmd = [sys.executable, "-m", "tokenization.train", "--train_file", str(small_corpus["txt"]),
           "--vocab_size", "700", "--num_sentinels", "10", "--output_dir", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    tok = AutoTokenizer.from_pretrained(out)
    assert len(tok) == 700 and tok.convert_ids_to_tokens(14) == "<extra_id_9>"
    with pytest.raises(ValueError, match="already holds a tokenizer.*--overwrite_output_dir"):
        train_main(cmd[3:] + ["--no_progress"])
    train_main(cmd[3:] + ["--overwrite_output_dir", "--no_progress"])


@pytest.mark.parametrize("streaming", [False, True])
def test_train_from_local_dataset_folder(small_corpus, tmp_path, streaming):
    data_dir = tmp_path / "dataset"
    data_dir.mkdir()
    shutil.copy(small_corpus["jsonl"], data_dir / "train.jsonl")
    args = ["--dataset_name", str(data_dir), "--split", "train", "--text_column", "body", "--vocab_size", "600",
            "--output_dir", str(tmp_path / "tok"), "--no_progress", "--max_samples", "40"]
    tok = train_main(args + (["--streaming"] if streaming else []))
    assert len(tok) == 600
    with pytest.raises(ValueError, match="no column 'text'"):
        train_main(args[:4] + ["--output_dir", str(tmp_path / "tok2"), "--no_progress"])


def test_train_bad_inputs_have_clear_errors(small_corpus, tmp_path):
    out = str(tmp_path / "out")
    base = ["--vocab_size", "500", "--output_dir", out, "--no_progress"]
    with pytest.raises(ValueError, match=r"corpus\.jsonl:1: no column 'text'.*--text_column"):
        train_main(["--train_file", str(small_corpus["jsonl"])] + base)
    with pytest.raises(ValueError, match=r"no column 'text'"):
        train_main(["--train_file", str(small_corpus["csv"])] + base)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match=r"empty\.txt: file is empty"):
        train_main(["--train_file", str(empty)] + base)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not valid UTF-8"):
        train_main(["--train_file", str(bad)] + base)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(ValueError, match=r"broken\.jsonl:2: invalid JSON"):
        list(iter_file_texts(broken))
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        train_main(["--train_file", str(tmp_path / "missing.txt")] + base)
    with pytest.raises(ValueError, match="unsupported file type"):
        list(iter_file_texts(Path(__file__)))
    with pytest.raises(ValueError, match="exactly one of"):
        train_main(base)


def test_split_long_runs_keeps_text_and_caps_runs():
    from tokenization.tokenization_forge_fast import MAX_TRAINING_RUN_CHARS, split_long_runs

    normal = "An ordinary sentence, with words of ordinary length. " * 20
    assert split_long_runs(normal) == [normal]
    text = "start " + "x" * 1000 + " middle " + "北" * 300 + "\tend"
    pieces = split_long_runs(text)
    assert "".join(pieces) == text
    runs = [len(run) for piece in pieces for run in re.findall(r"\S+", piece)]
    assert max(runs) <= MAX_TRAINING_RUN_CHARS and len(pieces) > 1


def test_training_on_megabytes_of_unbroken_text_finishes(tmp_path):
    """1 MB of one ASCII 'word' + 1 MB of unbroken Chinese: before long runs were split, the BPE trainer's merges
    were quadratic in the run length (> 200 s for 1 MB); the timeout is a generous guard, not a speed figure."""
    import random

    rng = random.Random(0)
    ascii_words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(3000)]
    cjk_words = ["".join(chr(0x4E00 + rng.randint(0, 3000)) for _ in range(rng.randint(1, 4))) for _ in range(3000)]
    corpus = tmp_path / "unbroken.txt"
    ascii_line = "".join(rng.choice(ascii_words) for _ in range(250_000))[:1_000_000]
    cjk_line = "".join(rng.choice(cjk_words) for _ in range(150_000))[:350_000]  # ~1 MB in UTF-8
    corpus.write_text(ascii_line + "\n" + cjk_line + "\n", encoding="utf-8")
    out = tmp_path / "tok"
    cmd = [sys.executable, "-m", "tokenization.train", "--train_file", str(corpus), "--vocab_size", "1000",
           "--output_dir", str(out), "--no_progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    fast = AutoTokenizer.from_pretrained(out)
    slow = ForgeTokenizer.from_pretrained(out)
    sample = ascii_line[:3000] + " " + cjk_line[:1000]
    ids = fast(sample)["input_ids"]
    assert ids == slow(sample)["input_ids"] and fast.decode(ids, skip_special_tokens=True) == sample
    assert len(ids) < 0.8 * len(sample.encode("utf-8"))  # merges were learnt from the long runs
