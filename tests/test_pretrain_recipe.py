"""End-to-end tests of recipes/pretrain.py on tiny slices of the shared corpora (forge-tiny, a few steps).

Every run uses one thread per process: on a shared 2-core machine a tiny model is ~50x slower with two
contending threads, and one thread also makes the floating-point reduction order fixed.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, TrainerCallback

import tokenization
from modeling import ForgeConfig, ForgeForConditionalGeneration
from recipes import pretrain
from recipes.publishing.export import OutputDirExistsError
from recipes.core.trainer_utils import last_complete_checkpoint
from recipes.core.pretraining import init_embeddings_from_word_vectors, load_word_vectors, pack_dataset

REPO = Path(__file__).resolve().parents[1]
N_STEPS, SAVE_EVERY = 6, 2


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _slice(src: Path, dst: Path, n: int) -> Path:
    with open(src, encoding="utf-8") as f, open(dst, "w", encoding="utf-8") as out:
        for _, line in zip(range(n), f):
            out.write(line)
    return dst


@pytest.fixture(scope="module")
def corpus(shared_data, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pretrain_corpus")
    return {
        "train": _slice(shared_data / "pretrain" / "train.jsonl", root / "train.jsonl", 30),
        "validation": _slice(shared_data / "pretrain" / "validation.jsonl", root / "validation.jsonl", 3),
    }


@pytest.fixture(scope="module")
def tokenizer_dir(corpus, tmp_path_factory) -> Path:
    texts = [json.loads(line)["text"] for line in open(corpus["train"], encoding="utf-8")]
    tok = tokenization.train_tokenizer(texts, vocab_size=600, show_progress=False)
    folder = tmp_path_factory.mktemp("pretrain_tok")
    tok.save_pretrained(folder)
    return folder


def _argv(corpus, out: Path, tokenizer_dir: Path | None = None, **overrides) -> list[str]:
    args = {
        "train_file": corpus["train"], "validation_file": corpus["validation"], "config_name": "forge-tiny",
        "block_size": 64, "per_device_train_batch_size": 4, "max_steps": N_STEPS, "learning_rate": 3e-3,
        "warmup_steps": 2, "lr_scheduler_type": "cosine", "logging_steps": 1, "eval_strategy": "no",
        "save_steps": SAVE_EVERY, "save_total_limit": 10, "report_to": "none", "disable_tqdm": "true",
        "seed": 7, "output_dir": out, "dataloader_num_workers": 0,
    }
    if tokenizer_dir is not None:
        args["tokenizer_name"] = tokenizer_dir
    args.update(overrides)
    argv = []
    for key, value in args.items():
        argv += [f"--{key}", str(value)]
    return argv


def _losses(folder: Path) -> dict[int, float]:
    state = json.loads((folder / "trainer_state.json").read_text())
    return {h["step"]: h["loss"] for h in state["log_history"] if "loss" in h}


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


@pytest.fixture(scope="module")
def reference(corpus, tokenizer_dir, tmp_path_factory) -> Path:
    """One uninterrupted run to N_STEPS (the baseline of the resume and determinism tests)."""
    out = tmp_path_factory.mktemp("pretrain_ref") / "run"
    pretrain.main(_argv(corpus, out, tokenizer_dir))
    return out


# ---------------------------------------------------------------- end to end


def test_end_to_end_writes_a_loadable_generating_folder(corpus, shared_data, tmp_path, caplog):
    """Tokenizer trained on the slice, forge-tiny, --init_embeddings, eval, Hub folder, card, curve."""
    out = tmp_path / "forge-tiny-pretrained"
    glove = shared_data / "wordvectors" / "glove.6B.50d.top20k.txt"
    metrics = pretrain.main(
        _argv(corpus, out, max_steps=4, vocab_size=600, config_overrides="d_model=64",
              init_embeddings=glove, max_eval_samples=2, log_level="info")
    )
    assert math.isfinite(metrics["eval_loss"])
    assert metrics["eval_perplexity"] == pytest.approx(math.exp(metrics["eval_loss"]))
    assert "coverage" in caplog.text

    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "vocab.json",
                 "modeling_forge.py", "configuration_forge.py", "tokenization_forge_fast.py", "README.md",
                 "loss_curve.png"):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.bin"))
    config = json.loads((out / "config.json").read_text())
    assert config["auto_map"]["AutoModelForSeq2SeqLM"] == "modeling_forge.ForgeForConditionalGeneration"
    card = (out / "README.md").read_text()
    assert f"| loss | {metrics['eval_loss']:.4g} |" in card
    assert "coverage" in card and "4 optimizer steps" in card
    checkpoint = out / "checkpoint-4"
    assert (checkpoint / "modeling_forge.py").is_file() and (checkpoint / "tokenizer.json").is_file()
    # every training log carries the throughput of its interval next to the loss (MFU only on a GPU of known peak)
    logs = [h for h in json.loads((checkpoint / "trainer_state.json").read_text())["log_history"] if "loss" in h]
    assert len(logs) == 4 and all(h["corpus_tokens_per_second"] > 0 and "mfu" not in h for h in logs)
    assert metrics["train_corpus_tokens_per_second_steady"] > 0 and "train_mfu_steady" not in metrics

    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSeq2SeqLM.from_pretrained(out)
    assert len(tokenizer) == model.config.vocab_size
    inputs = tokenizer(["The history of the <extra_id_0> began in"], return_tensors="pt")
    generated = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert generated.shape[0] == 1 and 1 < generated.shape[1] <= 6
    assert generated[0, 0].item() == model.config.decoder_start_token_id

    with pytest.raises(OutputDirExistsError):  # a finished model is never silently overwritten
        pretrain.main(_argv(corpus, out, max_steps=1))


def test_init_embeddings_rows_equal_padded_glove_vectors(tokenizer_dir, shared_data, caplog):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = ForgeForConditionalGeneration(ForgeConfig.from_pretrained("forge-tiny", vocab_size=len(tokenizer), d_model=64))
    path = shared_data / "wordvectors" / "glove.6B.50d.top20k.txt"
    caplog.set_level("INFO", logger="recipes")
    stats = init_embeddings_from_word_vectors(model, tokenizer, str(path))
    assert 0.2 < stats.coverage <= 1.0 and f"coverage {stats.coverage:.3f}" in caplog.text
    assert stats.method == "zero-pad"
    the = tokenizer.convert_tokens_to_ids("Ġthe")
    assert the in stats.token_ids  # "Ġthe" -> "the"
    vectors, _ = load_word_vectors(str(path))
    raw = torch.tensor(np.stack([vectors[tokenizer.decode([i]).strip().lower()] for i in stats.token_ids]),
                       dtype=torch.float64)
    padded = torch.nn.functional.pad(raw, (0, 14))
    expected = padded * (model.config.token_embedding_std() / padded.pow(2).mean().sqrt())
    rows = model.get_input_embeddings().weight[stats.token_ids].double()
    torch.testing.assert_close(rows, expected, rtol=1e-5, atol=1e-7)
    assert torch.equal(rows[:, 50:], torch.zeros_like(rows[:, 50:]))
    # tied output layer follows
    assert torch.equal(model.lm_head.weight[the], model.get_input_embeddings().weight[the])


def test_chinese_corpus(shared_data, tmp_path):
    corpus = {
        "train": _slice(shared_data / "pretrain_zh" / "train.jsonl", tmp_path / "train.jsonl", 6),
        "validation": _slice(shared_data / "pretrain_zh" / "validation.jsonl", tmp_path / "validation.jsonl", 1),
    }
    out = tmp_path / "zh"
    metrics = pretrain.main(_argv(corpus, out, max_steps=2, vocab_size=800, max_eval_samples=1))
    assert math.isfinite(metrics["eval_loss"])
    tokenizer = AutoTokenizer.from_pretrained(out)
    # packing is lossless on Chinese text: the blocks decode back to the documents joined by </s>
    import datasets

    docs = datasets.load_dataset("json", data_files=str(corpus["validation"]), split="train")
    blocks = pack_dataset(docs, tokenizer, "text", block_size=64)
    ids = [t for block in blocks["input_ids"] for t in block]
    assert tokenizer.decode(ids) == "".join(text + "</s>" for text in docs["text"])
    model = AutoModelForSeq2SeqLM.from_pretrained(out)
    inputs = tokenizer(["北京是中国的<extra_id_0>。"], return_tensors="pt")
    assert model.generate(**inputs, max_new_tokens=4, do_sample=False).shape[1] > 1


# ---------------------------------------------------------------- determinism and interruption


def test_same_seed_same_result(corpus, tokenizer_dir, reference, tmp_path):
    out = tmp_path / "again"
    pretrain.main(_argv(corpus, out, tokenizer_dir))
    assert _losses(out) == _losses(reference)
    _assert_same_weights(out, reference)


class _StopAt(TrainerCallback):
    """Interrupt the run after step ``k`` (its checkpoint is written first)."""

    def __init__(self, k: int) -> None:
        self.k = k

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.k:
            control.should_training_stop = True


def test_resume_gives_the_uninterrupted_losses(corpus, tokenizer_dir, reference, tmp_path):
    out = tmp_path / "interrupted"
    pretrain.main(_argv(corpus, out, tokenizer_dir), callbacks=[_StopAt(SAVE_EVERY)])
    assert (out / f"checkpoint-{SAVE_EVERY}").is_dir()
    # the stopped run still wrote its (step-k) final folder, so continuing it must say so explicitly
    with pytest.raises(OutputDirExistsError):
        pretrain.main(_argv(corpus, out, tokenizer_dir, resume_from_checkpoint="last"))
    pretrain.main(_argv(corpus, out, tokenizer_dir, resume_from_checkpoint="last", overwrite_output_dir="true"))
    assert _losses(out) == _losses(reference)  # steps 1..k from the checkpoint's history, k+1..N resumed
    _assert_same_weights(out, reference)


KILLABLE_RUN = textwrap.dedent(
    """
    import sys, time, torch
    from transformers import TrainerCallback
    from recipes import pretrain

    class HangAfterSave(TrainerCallback):  # keeps the run alive (mid-training) until it is SIGKILLed
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == {k}:
                print("CHECKPOINT-SAVED", flush=True)
                time.sleep(600)

    torch.set_num_threads(1)
    pretrain.main(sys.argv[1:], callbacks=[HangAfterSave()])
    """
)


def test_sigkill_then_resume_matches_uninterrupted(corpus, tokenizer_dir, reference, tmp_path):
    """Issue 8: a run killed with SIGKILL mid-way resumes to the same weights and losses (bitwise)."""
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    k = 2 * SAVE_EVERY
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLABLE_RUN.replace("{k}", str(k)), *map(str, _argv(corpus, out, tokenizer_dir))],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO,
    )
    try:
        deadline = time.time() + 240
        for line in proc.stdout:
            if "CHECKPOINT-SAVED" in line or time.time() > deadline:
                break
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "model.safetensors").exists()
    # A save interrupted half-way leaves a partial folder: it must be skipped, not resumed from.
    partial = out / f"checkpoint-{k + SAVE_EVERY}"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"\0" * 10)
    assert last_complete_checkpoint(str(out)).endswith(f"checkpoint-{k}")
    import shutil

    shutil.rmtree(partial)  # (the resumed run will write its own checkpoint there)
    pretrain.main(_argv(corpus, out, tokenizer_dir, resume_from_checkpoint="last"))
    assert _losses(out) == _losses(reference)
    _assert_same_weights(out, reference)


# ---------------------------------------------------------------- multi-process


def test_two_processes_match_one_process_with_double_batch(corpus, tokenizer_dir, tmp_path):
    """torchrun x2 (gloo) with batch b == 1 process with batch 2b; the logged loss is not x world size."""
    steps = 3
    common = dict(max_steps=steps, dropout=0.0, eval_strategy="no", save_strategy="no")
    single = tmp_path / "single"
    pretrain.main(_argv(corpus, single, tokenizer_dir, per_device_train_batch_size=4, **common))
    double = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "recipes.pretrain", *map(str, _argv(corpus, double, tokenizer_dir, per_device_train_batch_size=2,
                                                     **common))]
    result = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=420)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    one, two = _losses(single), _losses(double)
    assert sorted(one) == sorted(two) == list(range(1, steps + 1))
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-4), (step, one, two)
    # the loss moves between steps, so agreement step by step is not trivially satisfied
    assert abs(one[steps] - one[1]) > 1e-3
