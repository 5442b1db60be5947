"""Bad input stops a recipe with one clear DataValidationError before any training (issue 8's table)."""

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recipe_helpers import SAMPLE_DIR, write_jsonl
from recipes import qa, sentiment, srl, translation
from recipes.core.args import (
    QADataArguments,
    SentimentDataArguments,
    SRLDataArguments,
    SummarizationDataArguments,
    TranslationDataArguments,
)
from recipes.core.data import DataValidationError, build_label_list, check_labels, load_raw_datasets
from recipes.core.tasks import validate_for_task

pytestmark = pytest.mark.filterwarnings("ignore")


def _rows(task, split="train", n=16):
    with open(SAMPLE_DIR / task / f"{split}.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for _, line in zip(range(n), handle)]


def _run(module, tmp_path, train, validation=None, extra=()):
    """Run a recipe on the given files; it must fail before training (no checkpoint written)."""
    out = tmp_path / "out"
    argv = ["--config_name", "forge-tiny", "--tokenizer_name", "unused-never-loaded", "--output_dir", str(out),
            "--do_train", "--max_steps", "1", "--report_to", "none", "--train_file", str(train)]
    if validation is not None:
        argv += ["--validation_file", str(validation), "--do_eval"]
    with pytest.raises(DataValidationError) as info:
        module.main(argv + list(extra))
    assert not list(out.glob("checkpoint-*")) and not (out / "model.safetensors").exists()
    return str(info.value)


def test_missing_column_lists_available_ones_and_the_flag(tmp_path):
    rows = [{"sentence": r["text"], "label": r["label"]} for r in _rows("sentiment")]
    message = _run(sentiment, tmp_path, write_jsonl(tmp_path / "train.jsonl", rows))
    assert "'text' not found" in message and "sentence, label" in message and "--text_column" in message


def test_malformed_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "train.jsonl"
    lines = [json.dumps(r) for r in _rows("sentiment", n=5)]
    lines[3] = lines[3][:-5]  # cut the closing of line 4
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    message = _run(sentiment, tmp_path, path)
    assert f"{path} line 4 is not valid JSON" in message


def test_non_utf8_file_names_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b'{"text": "fine", "label": 1}\n{"text": "caf\xe9", "label": 0}\n')
    message = _run(sentiment, tmp_path, path)
    assert "line 2 is not valid UTF-8" in message and "iconv" in message


def test_label_outside_label_set_names_the_row(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", _rows("sentiment"))
    bad = _rows("sentiment", "validation", 6)
    bad[4]["label"] = 7
    validation = write_jsonl(tmp_path / "validation.jsonl", bad)
    message = _run(sentiment, tmp_path, train, validation)
    assert f"{validation} line 5: label 7" in message and "[0, 1]" in message


def test_empty_split(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text("\n", encoding="utf-8")
    message = _run(sentiment, tmp_path, train)
    assert "no JSON lines" in message or "empty" in message


def test_wrong_value_type_and_null(tmp_path):
    rows = _rows("sentiment", n=4)
    rows[2]["text"] = None
    message = _run(sentiment, tmp_path, write_jsonl(tmp_path / "train.jsonl", rows))
    assert "line 3: value is missing" in message


def test_qa_answer_not_at_offset(tmp_path):
    rows = _rows("qa", n=4)
    rows[1]["answers"]["answer_start"] = [rows[1]["answers"]["answer_start"][0] + 3]
    message = _run(qa, tmp_path, write_jsonl(tmp_path / "train.jsonl", rows))
    assert "line 2" in message and "does not start at answer_start" in message


def test_srl_tag_count_mismatch(tmp_path):
    rows = _rows("srl", n=4)
    rows[0]["tags"] = rows[0]["tags"][:-1]
    message = _run(srl, tmp_path, write_jsonl(tmp_path / "train.jsonl", rows))
    assert "line 1" in message and "tags for" in message


def test_translation_language_codes(tmp_path):
    message = _run(translation, tmp_path, write_jsonl(tmp_path / "train.jsonl", _rows("translation")),
                   extra=["--source_lang", "fr", "--target_lang", "en"])
    assert "'fr' not found" in message and "de, en" in message and "--source_lang" in message


def test_overlong_policy_error_names_examples(tmp_path, tokenizer_dir_for_validation):
    train = write_jsonl(tmp_path / "train.jsonl", _rows("sentiment", n=8))
    with pytest.raises(DataValidationError, match=r"longer than --max_seq_length 4 tokens"):
        sentiment.main(["--config_name", "forge-tiny", "--tokenizer_name", tokenizer_dir_for_validation,
                        "--output_dir", str(tmp_path / "o"), "--do_train", "--max_steps", "1", "--report_to", "none",
                        "--train_file", str(train), "--max_seq_length", "4", "--overlong_policy", "error"])


@pytest.fixture(scope="module")
def tokenizer_dir_for_validation(tmp_path_factory):
    from recipe_helpers import train_small_tokenizer

    path = tmp_path_factory.mktemp("tok")
    train_small_tokenizer(vocab_size=400).save_pretrained(path)
    return str(path)


# --------------------------------------------------------------------------------------------
# Fuzz: random column sets, types and values never end in anything but DataValidationError
# --------------------------------------------------------------------------------------------
COLUMNS = ["text", "label", "tokens", "predicate_index", "tags", "id", "question", "context", "answers",
           "de", "en", "translation", "document", "summary"]
safe_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.integers(), st.floats(allow_nan=True), safe_text)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["text", "answer_start", "de", "en"]), inner, max_size=3)),
    max_leaves=6,
)
records = st.lists(st.dictionaries(st.sampled_from(COLUMNS), values, max_size=6), max_size=5)

TASK_ARGS = {
    "sentiment": SentimentDataArguments,
    "translation": TranslationDataArguments,
    "summarization": SummarizationDataArguments,
    "qa": QADataArguments,
    "srl": SRLDataArguments,
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(train=records, validation=records)
def test_fuzz_validation_raises_only_data_validation_error(tmp_path, train, validation):
    files = {}
    for split, rows in (("train", train), ("validation", validation)):
        path = Path(tmp_path) / f"{split}.jsonl"
        # ensure_ascii keeps the file valid UTF-8 whatever the strings hold; NaN/inf are written as JS literals
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        files[split] = str(path)
    for task, args_class in TASK_ARGS.items():
        data_args = args_class(train_file=files["train"], validation_file=files["validation"])
        try:
            raw = load_raw_datasets(data_args, cache_dir=str(Path(tmp_path) / "cache"))
            validate_for_task(task, raw, data_args)
            if task == "sentiment":
                labels = build_label_list(raw["train"], data_args.label_column)
                check_labels(raw, "validation", data_args.label_column, labels)
                assert all(not isinstance(v, float) or not math.isnan(v) for v in labels)
        except DataValidationError:
            pass
