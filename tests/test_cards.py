"""Model cards: metadata and model-index from measured results, round trip, no tokens, snippets that run."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from hub_folders import TASKS, build_folders, load_hub_upload

pytestmark = pytest.mark.xdist_group("forge_hub_folders")

FAKE_TOKEN = "hf_fakeCardToken0123456789abcdef"
RUN_SNIPPETS = r'''
import contextlib, io, json, runpy, sys, traceback
try:
    import modeling  # noqa: F401
    importable = True
except ImportError:
    importable = False
results = {"forge_importable": importable}
for path in sys.argv[1:]:
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(path, run_name="__main__")
        results[path] = {"ok": True, "stdout": out.getvalue()}
    except BaseException:
        results[path] = {"ok": False, "error": traceback.format_exc()[-2000:]}
print(json.dumps(results))
'''


@pytest.fixture(scope="session")
def folders(tmp_path_factory):
    return build_folders(tmp_path_factory.mktemp("forge_folders"))


def _snippet(card_text: str) -> str:
    match = re.search(r"```python\n(.*?)```", card_text, re.DOTALL)
    assert match, "the card has no python usage snippet"
    return match.group(1)


def test_card_round_trip(tmp_path, monkeypatch):
    from huggingface_hub import ModelCard

    from recipes.publishing.cards import write_model_card

    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    curve = tmp_path / "elsewhere" / "loss_curve.png"
    curve.parent.mkdir()
    curve.write_bytes(b"\x89PNG fake image")
    measured = {"eval_rouge1": 41.25, "eval_rougeL": 38.5, "eval_gen_len": 12.0, "eval_runtime": 3.1,
                "eval_samples_per_second": 100.0, "epoch": 2.0, "eval_note": "n/a"}
    path = write_model_card(
        tmp_path / "model", model_name="forge-small-sum", task="summarization", metrics=measured,
        base_model="someone/forge-small", datasets=["knkarthick/dialogsum"], language="en", license="apache-2.0",
        dataset_name="DialogSum", dataset_split="validation",
        hyperparameters={"learning_rate": 3e-4, "per_device_train_batch_size": 16, "hub_token": FAKE_TOKEN},
        training_budget="2 epochs, 41 min on 2 CPU cores",
        command=f"python -m recipes.summarization --push_to_hub --hub_token {FAKE_TOKEN}",
        loss_curve=curve, repo_id="me/forge-small-sum",
    )
    card = ModelCard.load(path)
    data = card.data
    assert {r.metric_type: r.metric_value for r in data.eval_results} == {"rouge1": 41.25, "rougeL": 38.5,
                                                                          "gen_len": 12.0}
    assert {r.task_type for r in data.eval_results} == {"summarization"}
    assert {r.dataset_name for r in data.eval_results} == {"DialogSum"}
    assert {r.dataset_split for r in data.eval_results} == {"validation"}
    assert data.model_name == "forge-small-sum"
    assert (data.pipeline_tag, data.license, data.language, data.library_name) == (
        "summarization", "apache-2.0", "en", "transformers")
    assert data.datasets == ["knkarthick/dialogsum"] and data.base_model == "someone/forge-small"
    assert {"forge", "custom_code", "summarization"} <= set(data.tags)
    text = path.read_text()
    assert "| rouge1 | 41.25 |" in text and "| learning_rate | 0.0003 |" in text
    assert "2 epochs, 41 min on 2 CPU cores" in text and "python -m recipes.summarization" in text
    assert "![Training and evaluation loss](loss_curve.png)" in text
    assert (tmp_path / "model" / "loss_curve.png").read_bytes() == curve.read_bytes()
    assert 'model_id = "me/forge-small-sum"' in text
    # the token never reaches the card, neither by value nor by the key holding it
    assert FAKE_TOKEN not in text and "hub_token |" not in text
    assert "--hub_token ***" in text


def test_clean_metrics():
    from recipes.publishing.cards import clean_metrics

    assert clean_metrics({"eval_accuracy": 0.9, "test_f1": 0.8, "eval_loss": 0.3, "train_runtime": 5,
                          "epoch": 1, "eval_bad": float("nan"), "eval_flag": True, "eval_text": "x"}) == {
        "accuracy": 0.9, "f1": 0.8, "loss": 0.3}
    assert clean_metrics(None) == {}


def test_card_without_results_still_loads(tmp_path):
    from huggingface_hub import ModelCard

    from recipes.publishing.cards import write_model_card

    path = write_model_card(tmp_path, model_name="forge-base", task="pretraining", metrics={}, language=None)
    card = ModelCard.load(path)
    assert card.data.pipeline_tag == "text2text-generation" and not card.data.eval_results
    assert "No evaluation results were recorded" in card.text


def test_usage_snippets_run_as_written_without_forge(folders, tmp_path):
    """Every task's default snippet, copied from the card, runs in a fresh process where Forge is absent."""
    from recipes.publishing.cards import write_model_card
    from recipes.publishing.export import copy_code_files

    cards = {task: (folders[task] / "README.md") for task in TASKS}
    # the two seq2seq cards without a task folder of their own: pretraining and text2text-generation
    for task in ("pretraining", "text2text-generation"):
        folder = tmp_path / task
        shutil.copytree(folders["summarization"], folder)
        (folder / "README.md").unlink()
        copy_code_files(folder, task=None if task == "pretraining" else task)
        if task == "pretraining":
            config = json.loads((folder / "config.json").read_text())
            config.pop("custom_pipelines")
            (folder / "config.json").write_text(json.dumps(config))
        cards[task] = write_model_card(folder, model_name=f"forge-{task}", task=task, metrics={"eval_loss": 1.0})
    scripts = {}
    for task, card in cards.items():
        script = tmp_path / f"snippet_{task}.py"
        snippet = _snippet(card.read_text())
        assert f'model_id = "{card.parent}"' in snippet  # no repo id given: the folder itself
        script.write_text(snippet)
        scripts[task] = str(script)
    proc = load_hub_upload().run_python_without_forge(RUN_SNIPPETS, *scripts.values(), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert results.pop("forge_importable") is False
    failures = {task: results[path]["error"] for task, path in scripts.items() if not results[path]["ok"]}
    assert not failures, failures
    for task, path in scripts.items():
        assert results[path]["stdout"].strip(), f"the {task} snippet printed nothing"


def test_fine_tuned_card_names_its_base_model(tmp_path):
    """A card fine-tuned from a local folder names that folder's card title and path; a Hub id is named as such."""
    from huggingface_hub import ModelCard

    from recipes.publishing.cards import write_model_card

    base = tmp_path / "main_job" / "pretrained"
    write_model_card(base, model_name="forge-small-pretrained", task="pretraining", metrics={"eval_loss": 4.3})
    local = ModelCard.load(write_model_card(tmp_path / "sentiment", model_name="sentiment", task="text-classification",
                                            metrics={"eval_accuracy": 67.5}, base_model=str(base)))
    assert f"**Fine-tuned from:** forge-small-pretrained (local folder `{base}`)" in local.text
    assert "trained from scratch" not in local.text and "from scratch" not in local.text
    assert local.data.base_model is None  # the Hub's base_model field takes repo ids only
    hub = ModelCard.load(write_model_card(tmp_path / "sum", model_name="sum", task="summarization",
                                          metrics={}, base_model="someone/forge-small"))
    assert "**Fine-tuned from:** [someone/forge-small](https://huggingface.co/someone/forge-small)" in hub.text
    scratch = ModelCard.load(write_model_card(tmp_path / "scratch", model_name="s", task="translation", metrics={}))
    assert "**Fine-tuned from:** none (trained from scratch)" in scratch.text
