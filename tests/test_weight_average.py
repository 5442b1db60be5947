"""``--ema_decay``: a moving average of the weights that the recipes evaluate, save and export (recipes/core/trainers.py).

What a user relies on: the exported model is the average (not the last step), evaluations during training score the
average without changing the training itself, and a run resumed from a checkpoint continues the same average."""

import os

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from transformers import DataCollatorWithPadding, TrainerCallback

import modeling  # noqa: F401
from modeling import ForgeConfig, ForgeForSequenceClassification
from recipe_helpers import SAMPLE_DIR, train_small_tokenizer
from recipes import sentiment
from recipes.core.args import ForgeTrainingArguments
from recipes.core.trainers import EMA_WEIGHTS_NAME, ForgeTrainer
from tokenization import ForgeTokenizerFast

pytestmark = pytest.mark.filterwarnings("ignore")

DECAY = 0.8


def _data(n=24):
    rows = [{"input_ids": [4 + (i * 7 + j) % 50 for j in range(3 + i % 5)], "labels": i % 2} for i in range(n)]
    return Dataset.from_list([{**r, "attention_mask": [1] * len(r["input_ids"])} for r in rows])


class _Trajectory(TrainerCallback):
    """The trained weights at the start and after every optimizer step, and the weights each evaluation saw."""

    def __init__(self):
        self.steps, self.evaluated = [], []

    def _params(self, model):
        return [p.detach().clone() for p in model.parameters() if p.requires_grad]

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.steps.append(self._params(model))

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.steps.append(self._params(model))

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        self.evaluated.append((state.global_step, self._params(model)))


class _StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True


def _expected_average(trajectory, upto=None):
    """The average the docstring promises: lerp toward each step's weights with a warmed-up decay."""
    steps = trajectory.steps[: (upto + 1) if upto is not None else None]
    average = [t.clone() for t in steps[0]]
    for n, weights in enumerate(steps[1:]):
        decay = min(DECAY, (1 + n) / (10 + n))
        average = [a + (1 - decay) * (w - a) for a, w in zip(average, weights)]
    return average


def _trainer(out, max_steps=6, ema_decay=DECAY, **extra):
    torch.manual_seed(0)
    config = ForgeConfig.from_pretrained("forge-tiny", num_labels=2, dropout=0.0, attention_dropout=0.0)
    model = ForgeForSequenceClassification(config)
    args = ForgeTrainingArguments(
        str(out), ema_decay=ema_decay, max_steps=max_steps, per_device_train_batch_size=4, learning_rate=5e-3,
        save_strategy="steps", save_steps=3, report_to="none", use_cpu=True, disable_tqdm=True, seed=0, **extra)
    trajectory = _Trajectory()
    trainer = ForgeTrainer(model=model, args=args, train_dataset=_data(), eval_dataset=_data(8),
                           data_collator=DataCollatorWithPadding(ForgeTokenizerFast()), callbacks=[trajectory])
    return trainer, trajectory


def _trained(model):
    return [p.detach().clone() for p in model.parameters() if p.requires_grad]


def test_training_ends_with_the_average_and_checkpoints_keep_it(tmp_path):
    trainer, trajectory = _trainer(tmp_path / "run")
    trainer.train()
    expected = _expected_average(trajectory)
    final = _trained(trainer.model)
    assert all(torch.allclose(f, e, atol=1e-6) for f, e in zip(final, expected))
    assert not all(torch.allclose(f, w, atol=1e-4) for f, w in zip(final, trajectory.steps[-1]))  # not the last step

    saved = load_file(os.path.join(tmp_path / "run", "checkpoint-3", EMA_WEIGHTS_NAME))
    names = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert sorted(saved) == sorted(names)
    at_three = _expected_average(trajectory, upto=3)
    assert all(torch.allclose(saved[n], e, atol=1e-6) for n, e in zip(names, at_three))


def test_evaluations_during_training_score_the_average_and_leave_training_unchanged(tmp_path):
    plain, _ = _trainer(tmp_path / "plain")
    plain.train()
    evaluated, trajectory = _trainer(tmp_path / "evaluated", eval_strategy="steps", eval_steps=2)
    evaluated.train()

    assert [step for step, _ in trajectory.evaluated] == [2, 4, 6]
    for step, weights in trajectory.evaluated:
        assert all(torch.allclose(w, e, atol=1e-6) for w, e in zip(weights, _expected_average(trajectory, upto=step)))
    # swapping the average in and back out for each evaluation does not change what training computes
    assert all(torch.equal(a, b) for a, b in zip(_trained(plain.model), _trained(evaluated.model)))


def test_a_resumed_run_continues_the_saved_average(tmp_path):
    whole, _ = _trainer(tmp_path / "whole")
    whole.train()
    first, _ = _trainer(tmp_path / "split")  # the same schedule, stopped after the checkpoint at step 3
    first.add_callback(_StopAt(3))
    first.train()
    second, _ = _trainer(tmp_path / "split", max_steps=6)
    second.train(resume_from_checkpoint=str(tmp_path / "split" / "checkpoint-3"))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(_trained(whole.model), _trained(second.model)))


def test_a_decay_outside_zero_and_one_is_refused(tmp_path):
    model = ForgeForSequenceClassification(ForgeConfig.from_pretrained("forge-tiny", num_labels=2))
    for decay in (1.5, 1.0, -0.5):
        with pytest.raises(ValueError, match="--ema_decay must lie between 0 and 1"):
            ForgeTrainer(model=model, args=ForgeTrainingArguments(str(tmp_path), ema_decay=decay, report_to="none",
                                                                  use_cpu=True))


def test_the_recipe_exports_and_scores_the_average(tmp_path):
    tokenizer_dir = tmp_path / "tok"
    train_small_tokenizer().save_pretrained(tokenizer_dir)
    out = tmp_path / "sst"
    metrics = sentiment.main([
        "--config_name", "forge-tiny", "--tokenizer_name", str(tokenizer_dir), "--do_train", "--do_eval",
        "--train_file", str(SAMPLE_DIR / "sentiment" / "train.jsonl"),
        "--validation_file", str(SAMPLE_DIR / "sentiment" / "validation.jsonl"), "--max_train_samples", "16",
        "--max_eval_samples", "8", "--per_device_train_batch_size", "4", "--max_steps", "4", "--ema_decay", "0.9",
        "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true", "--output_dir", str(out)])
    assert "eval_accuracy" in metrics
    assert "| ema_decay | 0.9 |" in (out / "README.md").read_text()  # the card says the weights are an average
    from transformers import AutoModelForSequenceClassification

    exported = AutoModelForSequenceClassification.from_pretrained(out)
    assert exported.config.num_labels == 2


def test_zero_turns_a_recipe_default_off(tmp_path):
    trainer, trajectory = _trainer(tmp_path / "off", max_steps=3, ema_decay=0.0)
    trainer.train()
    assert all(torch.equal(f, w) for f, w in zip(_trained(trainer.model), trajectory.steps[-1]))  # the last step
