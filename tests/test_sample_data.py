"""Checks for the embedded sample data in recipes/sample_data (the main job's default input)."""
import json
import re
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[1] / "recipes" / "sample_data"
SPLITS = ("train", "validation")

# task -> (required fields, minimum rows per split)
TASKS = {
    "pretrain": ({"text", "title", "id"}, {"train": 250, "validation": 20}),
    "pretrain_zh": ({"text", "source", "title"}, {"train": 50, "validation": 5}),
    "sentiment": ({"text", "label"}, {"train": 300, "validation": 50}),
    "translation": ({"de", "en"}, {"train": 300, "validation": 40}),
    "summarization": ({"id", "document", "summary", "topic"}, {"train": 150, "validation": 20}),
    "qa": ({"id", "title", "context", "question", "answers"}, {"train": 250, "validation": 40}),
    "srl": ({"tokens", "predicate_index", "predicate", "tags", "head_tags", "sent_id", "doc_id"},
            {"train": 250, "validation": 40}),
    "nli": ({"premise", "hypothesis", "label"}, {"train": 190, "validation": 40}),
}
TEXT_FIELDS = {
    "pretrain": ("text", "title", "id"), "pretrain_zh": ("text", "source", "title"), "sentiment": ("text",),
    "translation": ("de", "en"), "summarization": ("id", "document", "summary", "topic"),
    "qa": ("id", "title", "context", "question"), "srl": ("predicate", "sent_id", "doc_id"),
    "nli": ("premise", "hypothesis", "label"),
}


def load(task: str, split: str) -> list:
    """Parse one JSON Lines file strictly: every line one JSON object, no blank lines."""
    path = SAMPLE / task / f"{split}.jsonl"
    assert path.is_file(), f"missing {path}"
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            assert line.strip(), f"{path}:{n} is blank"
            obj = json.loads(line)
            assert isinstance(obj, dict), f"{path}:{n} is not a JSON object"
            rows.append(obj)
    return rows


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("split", SPLITS)
def test_fields_counts_and_no_empty_text(task, split):
    fields, minimum = TASKS[task]
    rows = load(task, split)
    assert len(rows) >= minimum[split], f"{task}/{split}: only {len(rows)} rows"
    for i, row in enumerate(rows):
        assert set(row) == fields, f"{task}/{split} row {i}: fields {sorted(row)} != {sorted(fields)}"
        for key in TEXT_FIELDS[task]:
            assert isinstance(row[key], str) and row[key].strip(), f"{task}/{split} row {i}: empty {key!r}"


@pytest.mark.parametrize("task", sorted(TASKS))
def test_field_names_match_shared_data(task, shared_data):
    """The sample mirrors ../shared/data so `--data-dir` and the sample go through the same code."""
    path = shared_data / task / "train.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} absent")
    with open(path, encoding="utf-8") as f:
        real = set(json.loads(f.readline()))
    assert set(load(task, "train")[0]) == real


def test_files_are_utf8_without_ascii_escapes():
    for path in SAMPLE.glob("*/*.jsonl"):
        raw = path.read_text(encoding="utf-8")
        assert "\\u" not in raw, f"{path} was written with ensure_ascii=True"


def test_folder_is_small():
    total = sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file())
    assert total < 2.5 * 1024 * 1024, f"sample data is {total / 1e6:.1f} MB; keep it under ~2 MB"


def test_readme_states_license_and_purpose():
    text = (SAMPLE / "README.md").read_text(encoding="utf-8")
    assert "Apache-2.0" in text and "smoke" in text


def test_pretrain_documents():
    for split in SPLITS:
        rows = load("pretrain", split)
        assert len({r["id"] for r in rows}) == len(rows), "duplicate pretrain ids"
        for r in rows:
            assert r["text"].split("\n", 1)[0] == r["title"], "text must start with its title line"
    zh = load("pretrain_zh", "train") + load("pretrain_zh", "validation")
    assert all(re.search(r"[\u4e00-\u9fff]", r["text"]) for r in zh), "pretrain_zh must be Chinese text"


def test_sentiment_labels_balanced_and_lowercased():
    for split in SPLITS:
        rows = load("sentiment", split)
        labels = [r["label"] for r in rows]
        assert set(labels) == {0, 1} and all(type(x) is int for x in labels)
        assert abs(labels.count(0) - labels.count(1)) <= len(labels) * 0.1, "labels not balanced"
        assert all(r["text"] == r["text"].lower() for r in rows), "SST-2 style text is lower-cased"
    train = {r["text"] for r in load("sentiment", "train")}
    assert not train & {r["text"] for r in load("sentiment", "validation")}, "train/validation overlap"


def test_translation_pairs():
    train = load("translation", "train")
    val = load("translation", "validation")
    assert not {r["de"] for r in train} & {r["de"] for r in val}, "train/validation overlap"
    for r in train + val:
        assert r["de"] != r["en"]


def test_summarization_dialogues():
    for split in SPLITS:
        rows = load("summarization", split)
        assert len({r["id"] for r in rows}) == len(rows)
        for r in rows:
            turns = r["document"].split("\n")
            assert len(turns) >= 2
            assert all(re.match(r"#Person\d#: \S", t) for t in turns), r["id"]


def test_qa_answer_offsets():
    contexts = {}
    for split in SPLITS:
        rows = load("qa", split)
        assert len({r["id"] for r in rows}) == len(rows), "duplicate qa ids"
        for r in rows:
            ans = r["answers"]
            assert set(ans) == {"text", "answer_start"} and len(ans["text"]) == len(ans["answer_start"]) >= 1
            for text, start in zip(ans["text"], ans["answer_start"]):
                assert text and isinstance(start, int)
                assert r["context"][start:start + len(text)] == text, f"{r['id']}: bad offset for {text!r}"
        contexts[split] = {r["context"] for r in rows}
    assert not contexts["train"] & contexts["validation"], "a paragraph appears in both splits"
    long_ones = [c for c in contexts["train"] | contexts["validation"] if len(c) >= 1200]
    assert len(long_ones) >= 3, "need a few long contexts to exercise overflow windows"


def test_srl_bio_well_formed():
    for split in SPLITS:
        for r in load("srl", split):
            tokens, tags, heads, p = r["tokens"], r["tags"], r["head_tags"], r["predicate_index"]
            assert len(tags) == len(tokens) == len(heads) and all(t.strip() for t in tokens)
            assert isinstance(p, int) and 0 <= p < len(tokens)
            assert tags[p] == "B-V" and tags.count("B-V") == 1 and heads[p] == "V"
            assert re.fullmatch(r"[a-z_-]+\.(\d\d|LV)", r["predicate"]), r["predicate"]
            prev = "O"
            for t in tags:
                assert t == "O" or re.fullmatch(r"[BI]-[A-Z0-9-]+", t), t
                if t.startswith("I-"):
                    assert prev != "O" and prev[2:] == t[2:], f"{r['sent_id']}: {t} after {prev}"
                prev = t
            for t, h in zip(tags, heads):
                assert h == "O" or t[2:] == h, f"{r['sent_id']}: head tag {h} outside its span {t}"


def test_nli_labels_balanced_and_premises_not_shared():
    premises = {}
    for split in SPLITS:
        rows = load("nli", split)
        labels = [r["label"] for r in rows]
        assert {label: labels.count(label) for label in set(labels)} == dict.fromkeys(
            ("entailment", "neutral", "contradiction"), len(rows) // 3)
        assert all(r["premise"] != r["hypothesis"] for r in rows)
        premises[split] = {r["premise"] for r in rows}
    assert not premises["train"] & premises["validation"], "a premise appears in both splits"
