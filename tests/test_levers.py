"""The quality levers as flags: group_by_length with every recipe, --init_embeddings for every recipe, periodic
evaluation on a validation subset (learning curves), a task tokenizer from named columns, and the training
budget that does not count evaluation time."""

import json

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments

import modeling  # noqa: F401
from modeling import ForgeConfig, ForgeForSequenceClassification
from recipe_helpers import SAMPLE_DIR, train_small_tokenizer, write_jsonl
from recipes import qa, sentiment, srl, summarization, translation
from recipes.core.learning_curve import read_learning_curve
from recipes.core.pretraining import load_word_vectors, token_lookup_word
from recipes.core.trainers import ForgeTrainer
from tokenization.train import main as train_tokenizer_main

pytestmark = pytest.mark.filterwarnings("ignore")

COMMON = [
    "--config_name", "forge-tiny", "--do_train", "--do_eval", "--per_device_train_batch_size", "4",
    "--per_device_eval_batch_size", "4", "--learning_rate", "1e-3", "--logging_steps", "1", "--report_to", "none",
    "--disable_tqdm", "true", "--save_strategy", "no", "--dataloader_pin_memory", "false", "--seed", "7",
]
RECIPES = {
    "sentiment": (sentiment, []),
    "translation": (translation, ["--val_max_target_length", "8", "--label_smoothing_factor", "0.1"]),
    "summarization": (summarization, ["--max_source_length", "96", "--val_max_target_length", "8"]),
    "qa": (qa, ["--max_seq_length", "96", "--doc_stride", "24", "--max_question_length", "24"]),
    "srl": (srl, ["--max_seq_length", "128"]),
}


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok")
    train_small_tokenizer().save_pretrained(path)
    return str(path)


def _files(task, n_train=16, n_eval=6):
    return ["--train_file", str(SAMPLE_DIR / task / "train.jsonl"), "--validation_file",
            str(SAMPLE_DIR / task / "validation.jsonl"), "--max_train_samples", str(n_train),
            "--max_eval_samples", str(n_eval)]


def test_evaluation_keeps_dataset_order_under_group_by_length(tmp_path):
    """transformers 5 length-groups the eval set too; the recipes' Trainer must not (predictions pair by position)."""
    config = ForgeConfig.from_pretrained("forge-tiny", num_labels=8)
    rows = [{"input_ids": [5] * n, "attention_mask": [1] * n, "labels": i} for i, n in enumerate([3, 9, 2, 7, 5, 8, 4, 6])]
    data = Dataset.from_list(rows)
    args = TrainingArguments(str(tmp_path), per_device_eval_batch_size=2, train_sampling_strategy="group_by_length",
                             report_to="none", use_cpu=True)
    from transformers import DataCollatorWithPadding
    from tokenization import ForgeTokenizerFast

    collator = DataCollatorWithPadding(ForgeTokenizerFast())
    model = ForgeForSequenceClassification(config)
    grouped = Trainer(model=model, args=args, data_collator=collator).predict(data).label_ids
    ordered = ForgeTrainer(model=model, args=args, data_collator=collator).predict(data).label_ids
    assert list(ordered) == list(range(8))
    assert list(grouped) != list(range(8))  # the upstream behaviour this guards against


@pytest.mark.parametrize("task", list(RECIPES))
def test_group_by_length_and_init_embeddings_work_with_every_recipe(tmp_path, tokenizer_dir, task, caplog):
    """Every recipe trains with length-grouped batches and GloVe-initialised embeddings; predictions stay aligned."""
    from transformers import AutoConfig

    words = ["the", "a", "man", "woman", "dog", "is", "ein", "mann", "what", "who", "movie", "good", "bad"]
    rng = np.random.default_rng(0)
    glove = tmp_path / "vectors.txt"
    glove.write_text("".join(f"{w} " + " ".join(f"{v:.4f}" for v in rng.normal(size=8)) + "\n" for w in words))
    recipe, extra = RECIPES[task]
    out = tmp_path / task
    caplog.set_level("INFO")
    recipe.main(COMMON + _files(task) + extra + [
        "--max_steps", "2", "--tokenizer_name", tokenizer_dir, "--output_dir", str(out),
        "--train_sampling_strategy", "group_by_length", "--init_embeddings", str(glove),
    ])
    assert "--init_embeddings" in caplog.text and "coverage" in caplog.text
    assert f"| init_embeddings | {glove} |" in (out / "README.md").read_text()
    rows = [json.loads(line) for line in (out / "eval_predictions.jsonl").read_text().splitlines()]
    raw = [json.loads(line) for line in (SAMPLE_DIR / task / "validation.jsonl").read_text().splitlines()][: len(rows)]
    key = {"sentiment": "text", "qa": "id", "srl": "tokens"}.get(task, "source")
    gold = {"sentiment": "text", "qa": "id", "srl": "tokens", "translation": "de", "summarization": "document"}[task]
    assert [r[key] for r in rows] == [r[gold] for r in raw]
    assert AutoConfig.from_pretrained(out).model_type == "forge"


def test_init_embeddings_rows_come_from_the_vectors_in_a_fine_tuning_recipe(tmp_path, tokenizer_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    glove = tmp_path / "vectors.txt"
    rng = np.random.default_rng(1)
    glove.write_text("".join(f"{w} " + " ".join(f"{v:.4f}" for v in rng.normal(size=32)) + "\n"
                             for w in ["the", "movie", "good"]))
    out = tmp_path / "sent"
    sentiment.main(COMMON + _files("sentiment") + ["--max_steps", "1", "--learning_rate", "1e-9", "--tokenizer_name",
                                                   tokenizer_dir, "--output_dir", str(out), "--init_embeddings", str(glove)])
    model = AutoModelForSequenceClassification.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    vectors, _ = load_word_vectors(str(glove))
    found = [(i, token_lookup_word(tokenizer, i)) for i in range(5, len(tokenizer))]
    found = [(i, word) for i, word in found if word in vectors]
    assert {word for _, word in found} >= {"the", "good"}
    for token_id, word in found:
        row = model.get_input_embeddings().weight[token_id].detach().numpy()
        cosine = row @ vectors[word] / np.linalg.norm(row) / np.linalg.norm(vectors[word])
        assert cosine > 0.999  # the same direction (scaled to init_std), not a random row


def test_init_embeddings_with_a_pretrained_model_is_refused(tmp_path, tokenizer_dir):
    (tmp_path / "v.txt").write_text("the 0.1 0.2\n")
    with pytest.raises(ValueError, match="--init_embeddings initialises a model trained from scratch"):
        sentiment.main(COMMON[2:] + _files("sentiment") + ["--model_name_or_path", tokenizer_dir, "--max_steps", "1",
                                                           "--output_dir", str(tmp_path / "x"), "--init_embeddings", str(tmp_path / "v.txt")])


def test_periodic_evaluation_writes_a_learning_curve_on_a_subset(tmp_path, tokenizer_dir):
    """--eval_every_minutes: points during training on the first --eval_subset_size examples; final eval on all."""
    out = tmp_path / "qa"
    metrics = qa.main(COMMON + _files("qa", n_train=16, n_eval=8) + RECIPES["qa"][1] + [
        "--max_steps", "4", "--tokenizer_name", tokenizer_dir, "--output_dir", str(out),
        "--eval_every_minutes", "0.000001", "--eval_subset_size", "3",
    ])
    curve = read_learning_curve(out)
    assert [row["step"] for row in curve] == [1, 2, 3, 4]
    assert all("eval_f1" in row and row["train_minutes"] >= 0 for row in curve)
    minutes = [row["train_minutes"] for row in curve]
    assert minutes == sorted(minutes)
    assert json.loads((out / "eval_results.json").read_text())["eval_f1"] == metrics["eval_f1"]
    predictions = (out / "eval_predictions.jsonl").read_text().splitlines()
    assert len(predictions) == 8  # the final evaluation covers the whole (capped) split, not the subset


def test_time_budget_does_not_count_evaluation(tmp_path):
    from recipes.core.callbacks import TimeBudgetCallback
    from transformers import TrainerControl, TrainerState

    budget = TimeBudgetCallback(minutes=1.0)
    args, state, control = TrainingArguments(str(tmp_path), report_to="none"), TrainerState(), TrainerControl()
    budget.on_train_begin(args, state, control)
    budget.started -= 90  # 90 s of wall-clock, of which 45 s were evaluation
    budget.on_evaluate(args, state, control, metrics={"eval_runtime": 45.0, "eval_loss": 1.0})
    assert not budget.on_step_end(args, state, control).should_training_stop
    budget.started -= 30  # 120 s of wall-clock, 75 s of them training
    assert budget.on_step_end(args, state, control).should_training_stop


def test_time_budget_continues_after_resume(tmp_path):
    """The training time spent before an interruption is saved with the checkpoint and counted after resume."""
    from recipes.core.callbacks import TimeBudgetCallback
    from transformers import TrainerControl, TrainerState

    first = TimeBudgetCallback(minutes=1.0)
    args, control = TrainingArguments(str(tmp_path), report_to="none"), TrainerControl()
    first.on_train_begin(args, TrainerState(), control)
    first.started -= 40  # 40 s trained, then the checkpoint is written and the process dies
    saved = TrainerState(global_step=50, stateful_callbacks=[first])
    saved.save_to_json(str(tmp_path / "trainer_state.json"))
    resumed_state = TrainerState.load_from_json(str(tmp_path / "trainer_state.json"))
    second = TimeBudgetCallback(minutes=1.0)
    second.on_train_begin(args, resumed_state, control)
    assert second.elapsed() == pytest.approx(40.0, abs=1.0)
    assert not second.on_step_end(args, resumed_state, control).should_training_stop
    second.started -= 25  # 40 + 25 s > the 60-s budget
    assert second.on_step_end(args, resumed_state, control).should_training_stop


@pytest.mark.parametrize("scheduler_type,anneal,expected", [
    ("linear", True, 0.25), ("cosine", True, 0.5 * (1 + np.cos(np.pi * 0.75))), ("linear", False, 1.0),
    ("constant_with_warmup", True, 1.0),
])
def test_learning_rate_anneals_over_the_time_budget(tmp_path, scheduler_type, anneal, expected):
    """With --max_train_minutes the schedule decays over the budget's minutes, not over 1000 epochs."""
    from recipes.core.args import ForgeTrainingArguments
    from recipes.core.callbacks import TimeBudgetCallback, build_callbacks

    args = ForgeTrainingArguments(str(tmp_path), report_to="none", learning_rate=1e-3, warmup_steps=10,
                                  lr_scheduler_type=scheduler_type, max_train_minutes=1.0,
                                  anneal_over_budget=anneal, num_train_epochs=1000)
    model = ForgeForSequenceClassification(ForgeConfig.from_pretrained("forge-tiny", num_labels=2))
    trainer = ForgeTrainer(model=model, args=args, callbacks=build_callbacks(args))
    trainer.create_optimizer_and_scheduler(num_training_steps=10**7)
    budget = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, TimeBudgetCallback))
    factor = trainer.lr_scheduler.lr_lambdas[0]  # one per parameter group (decay / no decay), all the same
    assert factor(5) == pytest.approx(0.5, rel=1e-3)  # warm-up is still step-based
    budget.carried_seconds = 45.0  # three quarters of the budget used
    assert factor(1000) == pytest.approx(expected, rel=1e-3)
    budget.carried_seconds = 60.0
    assert factor(2000) == pytest.approx(0.0 if anneal and scheduler_type != "constant_with_warmup" else 1.0,
                                         abs=1e-3)


def test_time_capped_pretraining_anneals_too():
    """The pretraining recipe runs on the same budget-annealed Trainer: it used the safety layer's class alone, so a
    60-minute pretraining stayed at its peak rate throughout (cosine over --max_steps 1000000)."""
    from recipes import pretrain
    from recipes.core.trainers import _BudgetSchedule

    assert issubclass(pretrain.ForgeTrainer, _BudgetSchedule)


def test_task_tokenizer_from_named_columns(tmp_path):
    """python -m tokenization.train --text_columns de en: one joint vocabulary for source and target."""
    rows = [json.loads(line) for line in (SAMPLE_DIR / "translation" / "train.jsonl").read_text().splitlines()]
    german_only = train_tokenizer_main(["--train_file", str(SAMPLE_DIR / "translation" / "train.jsonl"),
                                        "--text_column", "de", "--vocab_size", "600", "--no_progress", "true",
                                        "--output_dir", str(tmp_path / "de")])
    joint = train_tokenizer_main(["--train_file", str(SAMPLE_DIR / "translation" / "train.jsonl"),
                                  "--text_columns", "de", "en", "--vocab_size", "600", "--no_progress", "true",
                                  "--output_dir", str(tmp_path / "joint")])
    english = " ".join(r["en"] for r in rows)
    assert len(joint(english)["input_ids"]) < 0.9 * len(german_only(english)["input_ids"])
    srl_tok = train_tokenizer_main(["--train_file", str(SAMPLE_DIR / "srl" / "train.jsonl"), "--text_columns",
                                    "tokens", "--vocab_size", "400", "--no_progress", "true",
                                    "--output_dir", str(tmp_path / "srl")])
    assert len(srl_tok) > 300  # word lists are read as text, not refused
    write_jsonl(tmp_path / "bad.jsonl", [{"de": "x"}])
    with pytest.raises(ValueError, match="no column 'en'"):
        train_tokenizer_main(["--train_file", str(tmp_path / "bad.jsonl"), "--text_columns", "de", "en",
                              "--output_dir", str(tmp_path / "bad")])
