"""The main job, in its reduced (--quick) mode on the embedded sample: every stage runs and every output
folder exists, is Hub-ready and loads with the Auto classes."""
import json

import pytest
from transformers import (
    AutoModelForQuestionAnswering,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
)

from recipes import main_job

AUTO = {
    "pretraining": AutoModelForSeq2SeqLM,
    "sentiment": AutoModelForSequenceClassification,
    "translation": AutoModelForSeq2SeqLM,
    "summarization": AutoModelForSeq2SeqLM,
    "qa": AutoModelForQuestionAnswering,
    "srl": AutoModelForTokenClassification,
    "nli": AutoModelForSequenceClassification,
}


# Messages that read like failures in a run that is fine (issue 18): each is fixed at its cause or said plainly.
ALARMING = (
    "LOAD REPORT",  # transformers' table of MISSING task-head keys
    "missing keys in the checkpoint",  # tied lm_head when the best checkpoint is reloaded
    "multivariate normal",  # resize_token_embeddings for the SRL markers
    "pin_memory",  # torch on a machine without an accelerator
    "seem to have been set",  # max_length saved next to pipeline calls with max_new_tokens
    "{'loss'", "{'eval_loss'", "'epoch'",  # per-step log dicts on the console
    "Traceback",
)


@pytest.mark.xdist_group("main-job")
def test_quick_main_job_writes_every_folder(tmp_path, capfd, caplog, monkeypatch):
    import subprocess
    import sys

    from recipes import sentiment

    out = tmp_path / "job"
    monkeypatch.setenv("FORGE_CACHE", str(tmp_path / "cache"))
    seen_commands = []
    real_sentiment = sentiment.main

    def sentiment_main(argv):  # commands.sh already names the stage that is about to run
        seen_commands.append((out / "commands.sh").read_text())
        return real_sentiment(argv)

    monkeypatch.setattr(sentiment, "main", sentiment_main)
    rows = main_job.main(["--quick", "--output-dir", str(out)])
    captured = capfd.readouterr()
    printed = captured.out
    console = captured.out + captured.err

    assert [row["task"] for row in rows] == ["pretraining", *main_job.TASKS]
    assert "| task | metric | value | folder |" in printed
    for task in main_job.TASKS:
        assert f"pipeline({main_job.task_spec(task).pipeline_task!r}) ->" in printed
    for row in rows:
        folder = out / ("pretrained" if row["task"] == "pretraining" else row["task"])
        assert row["folder"] == str(folder) and isinstance(row["value"], float)
        for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md", "modeling_forge.py"):
            assert (folder / name).is_file(), f"{folder.name}: {name} missing"
        assert not list(folder.glob("*.bin"))
        config = json.loads((folder / "config.json").read_text())
        assert "auto_map" in config
        model = AUTO[row["task"]].from_pretrained(folder, trust_remote_code=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
        assert model.get_input_embeddings().num_embeddings >= len(tokenizer)
    # SST-2-style 0/1 labels get their names: the sentiment pipeline answers "negative" / "positive".
    sentiment = json.loads((out / "sentiment" / "config.json").read_text())
    assert sentiment["id2label"] == {"0": "negative", "1": "positive"}
    assert json.loads((out / "results.json").read_text()) == rows
    assert (out / "commands.sh").read_text().count("python -m recipes.") == 1 + len(main_job.TASKS)

    assert seen_commands and "python -m recipes.sentiment " in seen_commands[0]
    assert "python -m recipes.translation " not in seen_commands[0]

    # quiet console: none of the alarming messages, one progress bar per stage, expectations in the banners
    for message in ALARMING:
        assert message not in console, f"{message!r} printed"
    assert "training steps:" in console and "expected:" in printed
    assert "New ForgeForSequenceClassification head initialised" in caplog.text  # said plainly, as INFO
    assert (out / "sentiment" / "train_log.jsonl").is_file() and list((out / "sentiment" / "runs").iterdir())
    generation = json.loads((out / "translation" / "generation_config.json").read_text())
    assert "max_length" not in generation and generation["max_new_tokens"] == 63

    # cards name the base they were fine-tuned from (the job's own pretrained folder)
    for task in main_job.TASKS:
        card = (out / task / "README.md").read_text()
        assert f"(local folder `{out / 'pretrained'}`)" in card and "trained from scratch" not in card

    # A second run into the same folder refuses, in one line naming the flag, before any work.
    with pytest.raises(SystemExit) as refused:
        main_job.main(["--quick", "--output-dir", str(out), "--tasks", "sentiment"])
    message = str(refused.value)
    assert "--overwrite_output_dir" in message and "\n" not in message and str(out / "sentiment") in message
    # ... and so does a recipe run from the command line: one line on stderr, no traceback
    proc = subprocess.run(
        [sys.executable, "-m", "recipes.sentiment", "--model_name_or_path", str(out / "pretrained"),
         "--train_file", str(main_job.SAMPLE_DATA / "sentiment" / "train.jsonl"), "--do_train",
         "--output_dir", str(out / "sentiment")],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and "--overwrite_output_dir" in proc.stderr
