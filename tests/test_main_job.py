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


@pytest.mark.xdist_group("main-job")
def test_quick_main_job_writes_every_folder(tmp_path, capsys):
    out = tmp_path / "job"
    rows = main_job.main(["--quick", "--output-dir", str(out)])
    printed = capsys.readouterr().out

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

    # A second run into the same folder refuses to overwrite the finished models.
    with pytest.raises(Exception, match="overwrite"):
        main_job.main(["--quick", "--output-dir", str(out), "--tasks", "sentiment"])
