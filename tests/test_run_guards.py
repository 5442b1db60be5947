"""Run guards (issue 14): no model trained on nothing, a resume is the same run, one run per folder, no
finished run lost at the final save, config numbers read as numbers, and errors that name the flag.

Each test runs the recipe as a user would (``main(argv)``) on the embedded sample data with forge-tiny.
"""

import errno
import json
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from recipe_helpers import SAMPLE_DIR, train_small_tokenizer, write_jsonl
from recipes import pretrain, sentiment, summarization
from recipes.core import guards
from recipes.core.args import ForgeTrainingArguments, ModelArguments, SentimentDataArguments, parse_args
from recipes.core.data import DataValidationError, load_raw_datasets
from recipes.core.pretraining import load_word_vectors

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok")
    train_small_tokenizer(vocab_size=600).save_pretrained(path)
    return str(path)


def _argv(tokenizer_dir, out, *flags, **overrides):
    options = {
        "config_name": "forge-tiny", "tokenizer_name": tokenizer_dir, "output_dir": str(out),
        "train_file": str(SAMPLE_DIR / "sentiment" / "train.jsonl"), "max_train_samples": "48",
        "max_steps": "8", "save_steps": "4", "logging_steps": "1", "per_device_train_batch_size": "8",
        "learning_rate": "1e-3", "seed": "3", "report_to": "none", "disable_tqdm": "true",
        "dataloader_pin_memory": "false",
    }
    options.update(overrides)
    argv = ["--do_train", *flags]
    for key, value in options.items():
        if value is not None:
            argv += [f"--{key}", value]
    return argv


def _nothing_written(out: Path) -> bool:
    return not list(out.glob("checkpoint-*")) and not (out / "model.safetensors").exists()


def _final_weights(checkpoint: Path) -> dict:
    """What a run that ends at ``checkpoint`` exports: its trained weights, with the moving average of the weights in
    their place (the sentiment recipe's default ``--ema_decay``, kept in each checkpoint)."""
    from recipes.core.trainers import EMA_WEIGHTS_NAME

    weights = load_file(checkpoint / "model.safetensors")
    assert (checkpoint / EMA_WEIGHTS_NAME).is_file()
    average = load_file(checkpoint / EMA_WEIGHTS_NAME)
    assert set(average) <= set(weights)
    weights.update(average)
    return weights


class _Crash(TrainerCallback):
    """Simulates a crash (or a kill) right after the checkpoint of ``step`` is on disk."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise RuntimeError(f"simulated crash after checkpoint-{self.step}")


# ------------------------------------------------------------------ training on nothing
@pytest.mark.parametrize(
    "override, message",
    [
        ({"learning_rate": "0"}, "--learning_rate 0"),
        ({"learning_rate": "-0.001"}, "--learning_rate -0.001"),
        ({"max_steps": "0"}, "--max_steps 0"),
        ({"max_steps": None, "num_train_epochs": "0"}, "--num_train_epochs 0"),
        ({"max_steps": None, "num_train_epochs": "-2"}, "--num_train_epochs -2"),
    ],
)
def test_training_plan_that_trains_nothing_is_refused(tmp_path, tokenizer_dir, override, message):
    out = tmp_path / "out"
    with pytest.raises(guards.TrainingPlanError, match=message):
        sentiment.main(_argv(tokenizer_dir, out, **override))
    assert _nothing_written(out)


@pytest.mark.parametrize("blank", ["", "   \n\t "])
def test_blank_pretraining_corpus_is_refused(tmp_path, tokenizer_dir, blank):
    corpus = write_jsonl(tmp_path / "blank.jsonl", [{"text": blank}] * 20)
    out = tmp_path / "out"
    with pytest.raises(DataValidationError, match=r"blank.jsonl holds no text.*--text_column"):
        pretrain.main(["--train_file", str(corpus), "--config_name", "forge-tiny", "--tokenizer_name", tokenizer_dir,
                       "--block_size", "32", "--max_steps", "2", "--output_dir", str(out), "--report_to", "none"])
    assert _nothing_written(out)


def test_every_target_empty_is_refused(tmp_path, tokenizer_dir):
    rows = []
    with open(SAMPLE_DIR / "summarization" / "train.jsonl", encoding="utf-8") as handle:
        for _, line in zip(range(12), handle):
            rows.append({**json.loads(line), "summary": " "})
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    out = tmp_path / "out"
    with pytest.raises(DataValidationError, match=r"Every training target.*--summary_column"):
        summarization.main(_argv(tokenizer_dir, out, train_file=str(train), max_train_samples=None))
    assert _nothing_written(out)


# ------------------------------------------------------------------ resume = the same run
def test_resume_with_other_arguments_is_refused_naming_the_flags(tmp_path, tokenizer_dir):
    out = tmp_path / "run"
    train = tmp_path / "train.jsonl"
    train.write_bytes((SAMPLE_DIR / "sentiment" / "train.jsonl").read_bytes())
    argv = _argv(tokenizer_dir, out, train_file=str(train))
    with pytest.raises(RuntimeError, match="simulated crash"):
        sentiment.main(argv, callbacks=[_Crash(4)])
    assert json.loads((out / "checkpoint-4" / guards.RUN_RECORD_NAME).read_text())["learning_rate"] == 1e-3

    with pytest.raises(guards.RunMismatchError, match=r"--learning_rate \(0.001 -> 0.0005\).*--seed \(3 -> 4\)"
                       r".*--overwrite_output_dir"):
        sentiment.main(_argv(tokenizer_dir, out, train_file=str(train), learning_rate="5e-4", seed="4"))
    with open(train, "a", encoding="utf-8") as handle:  # same path, other content
        handle.write(json.dumps({"text": "an extra line", "label": 1}) + "\n")
    with pytest.raises(guards.RunMismatchError, match=r"--train_file \(content changed\)"):
        sentiment.main(argv)
    assert not (out / "model.safetensors").exists()

    # --overwrite_output_dir starts a fresh run with the new values
    sentiment.main(_argv(tokenizer_dir, out, "--overwrite_output_dir", train_file=str(train), learning_rate="5e-4"))
    assert json.loads((out / "checkpoint-8" / guards.RUN_RECORD_NAME).read_text())["learning_rate"] == 5e-4


def test_logging_and_saving_flags_may_change_on_resume(tmp_path, tokenizer_dir):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        sentiment.main(_argv(tokenizer_dir, out), callbacks=[_Crash(4)])
    sentiment.main(_argv(tokenizer_dir, out, logging_steps="2", save_steps="2", save_total_limit="1"))
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 8 and (out / "model.safetensors").is_file()


def test_killed_after_final_checkpoint_finishes_without_an_extra_step(tmp_path, tokenizer_dir):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        sentiment.main(_argv(tokenizer_dir, out), callbacks=[_Crash(8)])
    assert (out / "checkpoint-8").is_dir() and not (out / "model.safetensors").exists()
    sentiment.main(_argv(tokenizer_dir, out))
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 8
    assert "8 optimizer steps" in (out / "README.md").read_text()
    final, checkpoint = load_file(out / "model.safetensors"), _final_weights(out / "checkpoint-8")
    assert all(torch.equal(final[k], checkpoint[k]) for k in checkpoint)


# ------------------------------------------------------------------ one run per folder
class _Slow(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        time.sleep(1.0)


def _slow_run(argv):
    torch.set_num_threads(1)
    sentiment.main(argv, callbacks=[_Slow()])


def test_second_run_on_the_same_folder_refuses_and_a_stale_lock_is_taken_over(tmp_path, tokenizer_dir, caplog):
    out = tmp_path / "run"
    child = multiprocessing.get_context("fork").Process(target=_slow_run, args=(_argv(tokenizer_dir, out),))
    child.start()
    try:
        deadline = time.time() + 120
        while not (out / guards.LOCK_NAME).is_file():
            assert child.is_alive() and time.time() < deadline, "the first run did not start"
            time.sleep(0.05)
        with pytest.raises(guards.RunLockedError, match=rf"pid {child.pid} .*--output_dir"):
            sentiment.main(_argv(tokenizer_dir, out))
        assert child.is_alive()  # the first run goes on
        os.kill(child.pid, signal.SIGKILL)
        child.join(timeout=60)
    finally:
        if child.is_alive():
            child.kill()
    assert json.loads((out / guards.LOCK_NAME).read_text())["pid"] == child.pid  # left behind by the kill
    with caplog.at_level(logging.WARNING, logger="recipes.core.guards"):
        sentiment.main(_argv(tokenizer_dir, out))
    assert "stale lock" in caplog.text and (out / "model.safetensors").is_file()
    assert not (out / guards.LOCK_NAME).exists()  # released at the end


# ------------------------------------------------------------------ output folder, final save
def test_unusable_output_folder_is_refused_before_training(tmp_path, tokenizer_dir):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    for out, message in ((a_file, "is a file"), (a_file / "sub", "not writable"), ("", "--output_dir is empty")):
        with pytest.raises(guards.OutputDirNotWritableError, match=message):
            sentiment.main(_argv(tokenizer_dir, out))


def test_full_disk_at_the_final_save_keeps_the_model_and_says_where(tmp_path, tokenizer_dir, monkeypatch):
    from recipes.publishing import export

    out = tmp_path / "run"
    real_save = export.save_hub_folder

    def disk_full_in_out(model, tokenizer, folder, **kwargs):
        if Path(folder) == out:
            raise OSError(errno.ENOSPC, "No space left on device", str(out / "model.safetensors"))
        return real_save(model, tokenizer, folder, **kwargs)

    monkeypatch.setattr(export, "save_hub_folder", disk_full_in_out)
    monkeypatch.setattr(guards.tempfile, "tempdir", str(tmp_path / "spare"))
    (tmp_path / "spare").mkdir()
    with pytest.raises(guards.FinalSaveError, match="No space left on device.*saved to") as info:
        sentiment.main(_argv(tokenizer_dir, out))
    kept = Path(str(info.value).split("saved to ")[1].split(" instead")[0])
    assert kept.parent == tmp_path / "spare"
    weights, last = load_file(kept / "model.safetensors"), _final_weights(out / "checkpoint-8")
    assert all(torch.equal(weights[k], last[k]) for k in last)
    assert (kept / "config.json").is_file() and (kept / "tokenizer.json").is_file()


# ------------------------------------------------------------------ config files
def test_config_file_numbers_written_naturally_are_numbers(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        f"output_dir: {tmp_path / 'out'}\nlearning_rate: 1e-3\nadam_epsilon: 1e-8\nweight_decay: 1e-2\n"
        "max_steps: 1e3\nper_device_train_batch_size: '8'\nmax_seq_length: 64\ndo_train: 'true'\n",
        encoding="utf-8",
    )
    _, data_args, training_args = parse_args(ModelArguments, SentimentDataArguments, ForgeTrainingArguments,
                                             args=[str(path)])
    assert training_args.learning_rate == 1e-3 and isinstance(training_args.learning_rate, float)
    assert training_args.adam_epsilon == 1e-8 and training_args.weight_decay == 0.01
    assert training_args.max_steps == 1000 and isinstance(training_args.max_steps, int)
    assert training_args.per_device_train_batch_size == 8 and training_args.do_train is True
    assert data_args.max_seq_length == 64

    path.write_text(json.dumps({"output_dir": str(tmp_path), "learning_rate": "fast"}), encoding="utf-8")
    json_path = path.rename(tmp_path / "run.json")
    with pytest.raises(ValueError, match=r"'learning_rate' must be a number, got 'fast'"):
        parse_args(ModelArguments, SentimentDataArguments, ForgeTrainingArguments, args=[str(json_path)])


# ------------------------------------------------------------------ errors that name the flag
def _as_unprivileged(fn):
    """Run ``fn`` in a forked child as user 'nobody' (root ignores file permissions); returns its error text."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(reader)
        message = ""
        try:
            os.setgid(65534)
            os.setuid(65534)
            fn()
        except BaseException as err:  # noqa: BLE001 - reported to the parent
            message = f"{type(err).__name__}: {err}"
        os.write(writer, message.encode())
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as handle:
        message = handle.read()
    os.waitpid(pid, 0)
    return message


def test_unreadable_input_files_name_the_flag(tmp_path, tokenizer_dir):
    folder = tmp_path / "vectors"
    folder.mkdir()
    out = tmp_path / "out"
    with pytest.raises(guards.InputFileError, match=r"--init_embeddings .*vectors is a folder, but a file is expected"):
        pretrain.main(["--train_file", str(SAMPLE_DIR / "pretrain" / "train.jsonl"), "--config_name", "forge-tiny",
                       "--init_embeddings", str(folder), "--output_dir", str(out), "--max_steps", "1"])
    assert _nothing_written(out)

    shared = Path(tempfile.mkdtemp())  # under /tmp itself, so that the unprivileged user can reach it
    secret = shared / "train.jsonl"
    secret.write_bytes((SAMPLE_DIR / "sentiment" / "train.jsonl").read_bytes())
    secret.chmod(0o000)
    shared.chmod(0o755)
    check = lambda: guards.check_input_files(data_args=SentimentDataArguments(train_file=str(secret)))  # noqa: E731
    if os.geteuid() == 0:
        message = _as_unprivileged(check)
    else:
        with pytest.raises(guards.InputFileError) as info:
            check()
        message = f"InputFileError: {info.value}"
    shutil.rmtree(shared)
    assert message.startswith("InputFileError: --train_file") and "permission denied" in message and "chmod" in message


def test_unwritable_datasets_cache_is_named_not_the_data(tmp_path):
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("")
    data_args = SentimentDataArguments(train_file=str(SAMPLE_DIR / "sentiment" / "train.jsonl"))
    with pytest.raises(guards.OutputDirNotWritableError, match=r"datasets cache .* \(--cache_dir\) is not writable"
                       r".*the data itself may be fine"):
        load_raw_datasets(data_args, cache_dir=str(blocker / "datasets"))


def test_nan_in_word_vectors_names_line_and_word(tmp_path):
    path = tmp_path / "vectors.txt"
    path.write_text("the 0.1 0.2 0.3\ncat 0.5 nan 0.1\ndog 1 2 3\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"--init_embeddings .*vectors.txt line 2: the vector of 'cat' holds NaN"):
        load_word_vectors(str(path))
    path.write_text("the 0.1 0.2 0.3\ndog 1e39 2 3\n", encoding="utf-8")  # overflows float32 to inf
    with pytest.raises(ValueError, match=r"line 2: the vector of 'dog' holds NaN or inf"):
        load_word_vectors(str(path))


def test_prediction_only_run_needs_no_valid_labels(tmp_path, tokenizer_dir, caplog):
    model = tmp_path / "model"
    sentiment.main(_argv(tokenizer_dir, model, max_steps="2", save_steps="2", class_names="negative,positive"))
    rows = [{"text": "a fine film", "label": 1}, {"text": "dull and slow", "label": 7},
            {"text": "no label here", "label": None}]
    test_file = write_jsonl(tmp_path / "test.jsonl", rows)
    out = tmp_path / "predict"
    with caplog.at_level(logging.WARNING, logger="recipes.core.guards"):
        metrics = sentiment.main(["--model_name_or_path", str(model), "--test_file", str(test_file), "--do_predict",
                                  "--output_dir", str(out), "--report_to", "none"])
    assert metrics == {}  # nothing scored
    # label 1 is one of the model's own label values (the one behind "positive"); 7 and the missing one are not
    assert "test.jsonl line 2" in caplog.text and "--label_column" in caplog.text
    assert "test.jsonl line 1" not in caplog.text
    predictions = [json.loads(line) for line in (out / "predict_predictions.jsonl").read_text().splitlines()]
    assert [p["text"] for p in predictions] == [r["text"] for r in rows]
    assert {p["prediction"] for p in predictions} <= {"negative", "positive"}


def test_cache_write_failure_during_loading_is_named_not_the_data(tmp_path, monkeypatch):
    """The cache passes the start-up probe, then fills up while datasets writes its Arrow files."""
    import datasets

    cache = tmp_path / "cache"
    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(cache / "json" / "data.arrow"))

    monkeypatch.setattr(datasets, "load_dataset", disk_full)
    data_args = SentimentDataArguments(train_file=str(SAMPLE_DIR / "sentiment" / "train.jsonl"))
    with pytest.raises(guards.OutputDirNotWritableError, match=r"Writing the datasets cache .*No space left"):
        load_raw_datasets(data_args, cache_dir=str(cache))


@pytest.mark.parametrize("task,empty_row,good_row,flag", [
    ("translation", {"de": "Hallo", "en": " "}, {"de": "Hallo", "en": "Hello"}, "--target_lang"),
    ("translation", {"translation": {"de": "Hallo", "en": ""}}, {"translation": {"de": "Hallo", "en": "Hi"}},
     "--target_lang"),
    ("qa", {"id": "1", "question": "q?", "context": "c", "answers": {"text": [], "answer_start": []}},
     {"id": "2", "question": "q?", "context": "c", "answers": {"text": ["c"], "answer_start": [0]}}, "--answer_column"),
    ("srl", {"tokens": ["a", "b"], "predicate_index": 0, "tags": ["O", "O"]},
     {"tokens": ["a", "b"], "predicate_index": 0, "tags": ["B-V", "B-ARG1"]}, "--tags_column"),
])
def test_each_task_reads_its_training_targets(task, empty_row, good_row, flag):
    """Each task's spec says what its training target is; a split of only empty targets is refused."""
    import datasets

    from recipes.core.registry import get_task

    spec = get_task(task)
    data_args = spec.data_args_class()
    refused = datasets.DatasetDict({"train": datasets.Dataset.from_list([empty_row] * 3)})
    with pytest.raises(DataValidationError, match=f"Every training target.*{flag}"):
        guards.check_training_targets(spec, refused, data_args)
    mixed = datasets.DatasetDict({"train": datasets.Dataset.from_list([empty_row, good_row])})
    guards.check_training_targets(spec, mixed, data_args)  # one real target: trained (a warning at most)


def test_post_norm_pretrained_start_at_a_scratch_rate_is_warned(tmp_path, tokenizer_dir, caplog):
    """A post-norm start fine-tuned at the from-scratch recipes' 1e-3 lost what it learned twice in the
    measurements (README, "Does pretraining pay for itself?"): the run says so and names the flag; not at 3e-4, not
    for a pre-norm start and not for a model built from a preset."""
    from types import SimpleNamespace

    start = tmp_path / "post-norm"
    with caplog.at_level(logging.WARNING, logger="recipes.core.guards"):
        sentiment.main(_argv(tokenizer_dir, start, max_steps="2", save_steps="2",
                             config_overrides="norm_position=post"))
    assert "post-norm pretrained" not in caplog.text  # built from forge-tiny: nothing learned to lose
    for lr, warned in (("1e-3", True), ("3e-4", False)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="recipes.core.guards"):
            sentiment.main(_argv(tokenizer_dir, tmp_path / f"fine-tuned-{lr}", max_steps="1", save_steps="1",
                                 learning_rate=lr, config_name=None, tokenizer_name=None,
                                 model_name_or_path=str(start)))
        assert ("post-norm pretrained model" in caplog.text) is warned, lr
        if warned:
            assert "--learning_rate 3e-4" in caplog.text
    pre_norm = SimpleNamespace(config=SimpleNamespace(norm_position="pre"))
    assert not guards.warn_post_norm_start(pre_norm, SimpleNamespace(model_name_or_path=str(start)),
                                           SimpleNamespace(learning_rate=1e-3))
