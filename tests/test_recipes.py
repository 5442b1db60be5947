"""Each fine-tuning recipe end to end on a small slice of the embedded sample data with forge-tiny.

Every run must write a Hub-ready folder that loads with the Auto classes, eval_results.json, a
predictions file, the loss curve and a model card with the measured results.
"""

import json

import pytest
from transformers import (
    AutoModelForQuestionAnswering,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
)

import modeling  # noqa: F401
import tokenization  # noqa: F401
from recipe_helpers import SAMPLE_DIR, train_small_tokenizer
from recipes import qa, sentiment, srl, summarization, translation
from recipes.publishing.export import OutputDirExistsError

pytestmark = pytest.mark.filterwarnings("ignore")

COMMON = [
    "--config_name", "forge-tiny", "--do_train", "--do_eval", "--max_steps", "3",
    "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "8", "--learning_rate", "1e-3",
    "--logging_steps", "1", "--report_to", "none", "--disable_tqdm", "true", "--save_steps", "3",
    "--dataloader_pin_memory", "false", "--seed", "7",
]


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok")
    train_small_tokenizer().save_pretrained(path)
    return str(path)


def _files(task, n_train=32, n_eval=8):
    return [
        "--train_file", str(SAMPLE_DIR / task / "train.jsonl"),
        "--validation_file", str(SAMPLE_DIR / task / "validation.jsonl"),
        "--max_train_samples", str(n_train), "--max_eval_samples", str(n_eval),
    ]


def _check_outputs(out, auto_class, metric):
    for name in ("config.json", "model.safetensors", "tokenizer.json", "modeling_forge.py", "README.md",
                 "eval_results.json", "eval_predictions.jsonl", "loss_curve.png", "all_results.json"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert auto_class.__name__ in config["auto_map"]
    results = json.loads((out / "eval_results.json").read_text())
    assert f"eval_{metric}" in results
    card = (out / "README.md").read_text()
    assert "model-index" in card and metric in card
    model = auto_class.from_pretrained(out)
    AutoTokenizer.from_pretrained(out)
    assert (out / "checkpoint-3" / "modeling_forge.py").is_file()  # checkpoints carry the code
    return model, results, [json.loads(line) for line in (out / "eval_predictions.jsonl").read_text().splitlines()]


def _eval_only(module, trained, tmp_path, task, metric, extra=(), n_eval=4):
    """Issue 15: evaluation and prediction of a fine-tuned folder with no train split (no --do_train)."""
    out = tmp_path / f"{task}-eval-only"
    validation = str(SAMPLE_DIR / task / "validation.jsonl")
    metrics = module.main([
        "--model_name_or_path", str(trained), "--validation_file", validation, "--test_file", validation,
        "--max_eval_samples", str(n_eval), "--max_predict_samples", str(n_eval), "--do_eval", "--do_predict",
        "--per_device_eval_batch_size", "8", "--report_to", "none", "--disable_tqdm", "true",
        "--dataloader_pin_memory", "false", "--output_dir", str(out), *extra,
    ])
    assert f"eval_{metric}" in metrics and f"predict_{metric}" in metrics
    for name in ("eval_predictions.jsonl", "predict_predictions.jsonl"):
        assert len((out / name).read_text().splitlines()) == n_eval
    assert not (out / "model.safetensors").exists()  # nothing trained, nothing exported
    return out


def test_sentiment_end_to_end_with_early_stopping_and_augmentation(tmp_path, tokenizer_dir):
    out = tmp_path / "sentiment"
    metrics = sentiment.main(
        COMMON + _files("sentiment") + [
            "--tokenizer_name", tokenizer_dir, "--output_dir", str(out), "--eval_strategy", "steps", "--eval_steps", "3",
            "--early_stopping_patience", "2", "--augment", "swap", "--weight_decay", "0.01", "--dropout", "0.1",
        ]
    )
    model, results, rows = _check_outputs(out, AutoModelForSequenceClassification, "accuracy")
    assert 0 <= metrics["eval_accuracy"] <= 100 and "eval_macro_f1" in results
    assert model.config.id2label == {0: "0", 1: "1"}
    assert len(rows) == 8 and {"text", "prediction", "label"} <= set(rows[0])
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["best_metric"] is not None  # best-model tracking on the task metric


def test_translation_end_to_end(tmp_path, tokenizer_dir):
    out = tmp_path / "translation"
    translation.main(
        COMMON + _files("translation", n_eval=4) + [
            "--tokenizer_name", tokenizer_dir, "--output_dir", str(out), "--source_lang", "de", "--target_lang", "en",
            "--label_smoothing_factor", "0.1", "--num_beams", "2", "--length_penalty", "1.2",
            "--val_max_target_length", "8", "--max_source_length", "48", "--max_target_length", "48",
            "--copy_attention", "true",
        ]
    )
    model, results, rows = _check_outputs(out, AutoModelForSeq2SeqLM, "bleu")
    assert model.config.copy_attention and model.copy_generator is not None  # --copy_attention, reloaded
    assert "eval_chrf" in results and "eval_gen_len" in results
    assert {"source", "prediction", "reference"} <= set(rows[0])
    assert model.generation_config.num_beams == 2
    assert json.loads((out / "config.json").read_text())["custom_pipelines"].keys() == {"translation"}
    _eval_only(translation, out, tmp_path, "translation", "bleu",
               ["--source_lang", "de", "--target_lang", "en", "--val_max_target_length", "8"])


def test_summarization_end_to_end(tmp_path, tokenizer_dir):
    out = tmp_path / "summarization"
    summarization.main(
        COMMON + _files("summarization", n_eval=4) + [
            "--tokenizer_name", tokenizer_dir, "--output_dir", str(out), "--max_source_length", "96",
            "--max_target_length", "32", "--val_max_target_length", "8", "--no_repeat_ngram_size", "2",
        ]
    )
    model, results, rows = _check_outputs(out, AutoModelForSeq2SeqLM, "rougeL")
    # a model built from a preset copies source tokens, in post-norm layers (summarization's measured defaults)
    assert model.config.copy_attention and model.copy_generator is not None and model.config.norm_position == "post"
    assert {"eval_rouge1", "eval_rouge2", "eval_rougeLsum", "eval_gen_len"} <= set(results)
    assert rows[0]["id"].startswith(("train", "dev", "val", "sum")) or rows[0]["id"]
    _eval_only(summarization, out, tmp_path, "summarization", "rougeL", ["--val_max_target_length", "8"])


def test_qa_end_to_end(tmp_path, tokenizer_dir):
    out = tmp_path / "qa"
    qa.main(
        COMMON + _files("qa") + [
            "--tokenizer_name", tokenizer_dir, "--output_dir", str(out), "--max_seq_length", "96",
            "--doc_stride", "24", "--max_question_length", "24",
        ]
    )
    model, results, rows = _check_outputs(out, AutoModelForQuestionAnswering, "f1")
    # a model built from a preset marks the tokens the question and context share (QA's measured default); the
    # evaluation-only run below reloads the folder, whose own setting then applies
    assert model.config.qa_lexical_match and model.lexical_match is not None
    assert "eval_exact_match" in results
    assert {"id", "prediction", "answers", "nbest"} <= set(rows[0])
    _eval_only(qa, out, tmp_path, "qa", "f1", ["--max_seq_length", "96", "--doc_stride", "24"])


def test_qa_lexical_match_is_refused_for_the_bart_control(tmp_path, tokenizer_dir):
    with pytest.raises(ValueError, match="--lexical_match is a Forge head option"):
        qa.main(COMMON + _files("qa") + ["--tokenizer_name", tokenizer_dir, "--output_dir", str(tmp_path / "qa"),
                                         "--architecture", "bart", "--lexical_match", "true"])


def test_srl_end_to_end(tmp_path, tokenizer_dir):
    out = tmp_path / "srl"
    srl.main(
        COMMON + _files("srl") + [
            "--tokenizer_name", tokenizer_dir, "--output_dir", str(out), "--augment", "word_dropout",
            "--max_seq_length", "128", "--predicate_context", "true",
        ]
    )
    model, results, rows = _check_outputs(out, AutoModelForTokenClassification, "f1")
    # the head joins each token with the predicate (found after the <pred> marker) and the preset is built with
    # rotary positions (SRL's measured default); the evaluation-only run below reloads the folder without the flag,
    # whose own setting then applies
    assert model.config.classifier_predicate_context and model.predicate_context is not None
    assert model.config.position_embedding_type == "rotary"
    assert "V" not in {k[len("eval_f1_"):] for k in results if k.startswith("eval_f1_")}
    assert all(len(r["prediction"]) == len(r["tokens"]) for r in rows)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert "<pred>" in tokenizer.get_vocab() and model.config.predicate_marker_id == tokenizer.convert_tokens_to_ids("<pred>")
    assert model.get_input_embeddings().num_embeddings >= len(tokenizer)
    _eval_only(srl, out, tmp_path, "srl", "f1", ["--max_seq_length", "128"])


def test_refuses_to_overwrite_a_finished_model_and_reads_yaml(tmp_path, tokenizer_dir):
    out = tmp_path / "sent"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / "model.safetensors").write_bytes(b"x")
    config = tmp_path / "run.yaml"
    config.write_text(
        f"config_name: forge-tiny\ntokenizer_name: {tokenizer_dir}\noutput_dir: {out}\ndo_train: true\n"
        f"train_file: {SAMPLE_DIR / 'sentiment' / 'train.jsonl'}\nmax_steps: 1\nreport_to: none\n"
    )
    with pytest.raises(OutputDirExistsError, match="overwrite"):
        sentiment.main([str(config)])
    assert (out / "model.safetensors").read_bytes() == b"x"  # untouched


def test_sentiment_class_names_survive_an_eval_only_run(tmp_path, tokenizer_dir):
    """A folder fine-tuned with --class_names (names over 0/1 labels) evaluates 0/1-labelled data on its own:
    the config keeps the data's label values next to the names."""
    out = tmp_path / "sentiment-named"
    sentiment.main(COMMON + _files("sentiment") + [
        "--tokenizer_name", tokenizer_dir, "--output_dir", str(out), "--class_names", "negative,positive",
    ])
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"} and config["label_values"] == [0, 1]
    evaluated = _eval_only(sentiment, out, tmp_path, "sentiment", "accuracy")
    rows = [json.loads(line) for line in (evaluated / "predict_predictions.jsonl").read_text().splitlines()]
    assert {row["label"] for row in rows} <= {"negative", "positive"}
    assert {row["prediction"] for row in rows} <= {"negative", "positive"}
