"""The NLI recipe (the sixth task, added as one recipe file): premise/hypothesis pair classification whose
saved folder serves transformers' own zero-shot-classification pipeline, in-process and without Forge."""
import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

import modeling  # noqa: F401
import tokenization  # noqa: F401
from hub_folders import load_hub_upload
from recipe_helpers import SAMPLE_DIR, train_small_tokenizer, write_jsonl
from recipes import main_job, nli
from recipes.core.data import DataValidationError
from recipes.core.registry import get_task

pytestmark = pytest.mark.filterwarnings("ignore")

ARGS = [
    "--config_name", "forge-tiny", "--do_train", "--do_eval", "--max_steps", "4", "--learning_rate", "1e-3",
    "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "8", "--report_to", "none",
    "--disable_tqdm", "true", "--dataloader_pin_memory", "false", "--seed", "7", "--max_eval_samples", "12",
]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok")
    train_small_tokenizer().save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def nli_folder(tmp_path_factory, tokenizer_dir):
    out = tmp_path_factory.mktemp("nli") / "model"
    metrics = nli.main(ARGS + [
        "--train_file", str(SAMPLE_DIR / "nli" / "train.jsonl"), "--validation_file", str(SAMPLE_DIR / "nli" / "validation.jsonl"),
        "--tokenizer_name", tokenizer_dir, "--output_dir", str(out),
    ])
    return out, metrics


def test_registry_knows_nli_by_every_name_and_the_main_job_runs_it():
    assert get_task("natural-language-inference") is get_task("nli") is get_task("zero-shot-classification")
    assert main_job.TASKS[-1] == "nli"
    assert get_task("nli").module == "recipes.nli"


@pytest.mark.xdist_group("nli")
def test_nli_folder_runs_the_zero_shot_pipeline(nli_folder):
    out, metrics = nli_folder
    assert 0 <= metrics["eval_accuracy"] <= 100 and "eval_macro_f1" in metrics
    config = json.loads((out / "config.json").read_text())
    assert config["label2id"] == {"contradiction": 0, "entailment": 1, "neutral": 2}
    assert "custom_pipelines" not in config  # transformers' own pipeline serves it
    rows = [json.loads(line) for line in (out / "eval_predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and set(rows[0]) == {"premise", "hypothesis", "prediction", "label"}
    assert "pipeline_tag: zero-shot-classification" in (out / "README.md").read_text()

    classifier = pipeline("zero-shot-classification", model=str(out), trust_remote_code=True)
    premise, labels = "A woman is riding a bicycle along the river.", ["cycling", "cooking", "sleeping"]
    result = classifier(premise, candidate_labels=labels, hypothesis_template="She is {}.")
    assert sorted(result["labels"]) == sorted(labels) and abs(sum(result["scores"]) - 1) < 1e-5

    # The scores are the softmax of the model's entailment logits over the candidate hypotheses.
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    batch = tokenizer([premise] * 3, [f"She is {label}." for label in labels], return_tensors="pt", padding=True)
    with torch.no_grad():
        entail = model(**batch).logits[:, config["label2id"]["entailment"]]
    expected = dict(zip(labels, torch.softmax(entail, dim=0).tolist()))
    assert dict(zip(result["labels"], result["scores"])) == pytest.approx(expected, abs=1e-5)


@pytest.mark.xdist_group("nli")
def test_nli_folder_passes_the_upload_preflight_without_forge(nli_folder):
    out, _ = nli_folder
    problems, report = load_hub_upload().preflight(out)
    assert problems == []
    assert report["task"] == "zero-shot-classification" and report["forge_importable"] is False
    assert set(report["pipeline_output"]["labels"]) == {"transport", "sport"}


def test_mnli_integer_labels_get_their_names(tmp_path, tokenizer_dir):
    rows = [json.loads(line) for line in (SAMPLE_DIR / "nli" / "train.jsonl").read_text().splitlines()][:24]
    ids = {"entailment": 0, "neutral": 1, "contradiction": 2}
    train = write_jsonl(tmp_path / "train.jsonl", [{**r, "label": ids[r["label"]]} for r in rows])
    out = tmp_path / "out"
    nli.main(["--config_name", "forge-tiny", "--do_train", "--max_steps", "1", "--report_to", "none",
              "--train_file", str(train), "--tokenizer_name", tokenizer_dir, "--output_dir", str(out)])
    assert json.loads((out / "config.json").read_text())["id2label"] == {"0": "entailment", "1": "neutral",
                                                                         "2": "contradiction"}


def test_missing_hypothesis_column_is_named(tmp_path, tokenizer_dir):
    train = write_jsonl(tmp_path / "train.jsonl", [{"premise": "A man runs.", "label": "entailment"}] * 4)
    with pytest.raises(DataValidationError, match="hypothesis"):
        nli.main(["--config_name", "forge-tiny", "--do_train", "--max_steps", "1", "--report_to", "none",
                  "--train_file", str(train), "--tokenizer_name", tokenizer_dir, "--output_dir", str(tmp_path / "o")])
