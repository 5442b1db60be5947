"""Interruption, determinism and divergence for a fine-tuning recipe (issue 8).

- A sentiment run (a forked process) killed with SIGKILL mid-way and rerun with the same command
  resumes from its last complete checkpoint and ends with the same weights and losses as an uninterrupted run.
  Expected bitwise on one CPU thread (the Trainer restores model, optimizer, scheduler, RNG states
  and the position in the data order); the tolerance below (1e-6 absolute) only absorbs
  summation-order noise should a BLAS build differ between processes.
- Same seed, same data, same machine: the same metrics and weights.
- A run whose loss goes NaN stops with a message naming the step, and no checkpoint after it is written.
"""

import contextlib
import json
import logging
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from recipe_helpers import SAMPLE_DIR, train_small_tokenizer
from recipes import sentiment
from recipes.core.callbacks import TrainingDivergedError

pytestmark = pytest.mark.filterwarnings("ignore")


class Slow(TrainerCallback):
    """Gives the test time to kill the run between checkpoints (changes no numbers)."""

    def on_step_end(self, args, state, control, **kwargs):
        time.sleep(1.0)


def _train_until_killed(argv):
    """Child process body: the recipe as a user runs it, slowed down."""
    torch.set_num_threads(1)
    sentiment.main(argv, callbacks=[Slow()])


def _one_thread(fn, *args):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same summation order in every run
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok")
    train_small_tokenizer(vocab_size=600).save_pretrained(path)
    return str(path)


def _argv(tokenizer_dir, out, **overrides):
    options = {
        "config_name": "forge-tiny", "tokenizer_name": tokenizer_dir, "output_dir": str(out),
        "train_file": str(SAMPLE_DIR / "sentiment" / "train.jsonl"), "max_train_samples": "48",
        "max_steps": "8", "save_steps": "4", "logging_steps": "1", "per_device_train_batch_size": "8",
        "learning_rate": "1e-3", "dropout": "0.1", "seed": "3", "report_to": "none", "disable_tqdm": "true",
        "dataloader_pin_memory": "false",
    }
    options.update(overrides)
    argv = ["--do_train"]
    for key, value in options.items():
        argv += [f"--{key}", value]
    return argv


@contextlib.contextmanager
def _capture_recipe_log():
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("recipes.core.trainer_utils")
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def _losses(out):
    history = json.loads((Path(out) / "trainer_state.json").read_text())["log_history"]
    return {h["step"]: h["loss"] for h in history if "loss" in h}


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, tokenizer_dir):
    full, cut = tmp_path / "full", tmp_path / "cut"
    _one_thread(sentiment.main, _argv(tokenizer_dir, full))  # the uninterrupted reference

    # a forked child (no re-import: fast) runs the same command and is SIGKILLed mid-way
    child = multiprocessing.get_context("fork").Process(target=_train_until_killed, args=(_argv(tokenizer_dir, cut),))
    child.start()
    try:
        deadline = time.time() + 300
        while not (cut / "checkpoint-4" / "trainer_state.json").is_file():
            assert child.is_alive(), "the run ended before it could be interrupted"
            assert time.time() < deadline, "no checkpoint-4 in time"
            time.sleep(0.1)
        os.kill(child.pid, signal.SIGKILL)  # between checkpoint 4 and step 8
        child.join(timeout=60)
    finally:
        if child.is_alive():
            child.kill()
    assert child.exitcode == -signal.SIGKILL
    assert not (cut / "model.safetensors").exists() and not (cut / "checkpoint-8").exists()

    # the same command again resumes from checkpoint-4 on its own
    with _capture_recipe_log() as messages:
        _one_thread(sentiment.main, _argv(tokenizer_dir, cut))
    assert any("Resuming from checkpoint" in m and "checkpoint-4" in m for m in messages)

    expected, resumed = load_file(full / "model.safetensors"), load_file(cut / "model.safetensors")
    assert expected.keys() == resumed.keys()
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=0, atol=1e-6, msg=name)
    full_losses, cut_losses = _losses(full), _losses(cut)
    assert set(full_losses) == set(cut_losses) == set(range(1, 9))
    for step in range(5, 9):
        assert cut_losses[step] == pytest.approx(full_losses[step], abs=1e-6)


def test_same_seed_same_results(tmp_path, tokenizer_dir):
    extra = {"validation_file": str(SAMPLE_DIR / "sentiment" / "validation.jsonl"), "max_eval_samples": "16",
             "max_steps": "3", "save_steps": "3"}
    runs = []
    for name in ("a", "b"):
        metrics = sentiment.main(_argv(tokenizer_dir, tmp_path / name, **extra) + ["--do_eval"])
        runs.append((metrics, load_file(tmp_path / name / "model.safetensors")))
    (m1, w1), (m2, w2) = runs
    assert m1["eval_loss"] == m2["eval_loss"] and m1["eval_accuracy"] == m2["eval_accuracy"]
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path, tokenizer_dir):
    out = tmp_path / "nan"
    with pytest.raises(TrainingDivergedError, match=r"stopped at step \d+.*learning rate") as info:
        sentiment.main(_argv(tokenizer_dir, out, learning_rate="1e30", max_steps="6", save_steps="1",
                             max_grad_norm="0"))
    step = int(info.value.args[0].split("step ")[1].split(":")[0])
    checkpoints = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert all(s < step for s in checkpoints)
    assert not (out / "model.safetensors").exists()  # no finished model from a diverged run
    for s in checkpoints:
        weights = load_file(out / f"checkpoint-{s}" / "model.safetensors")
        assert all(torch.isfinite(t).all() for t in weights.values())
