"""What a hostile folder or command line must not achieve (issue 14's security classes).

- An evaluation/prediction-only run of a Forge folder never imports the folder's Python files, with or
  without ``--trust_remote_code`` (the installed Forge classes serve it).
- A secret on the command line (any shape) reaches no file, log or card, and no checkpoint holds a pickle.
- A folder whose only weights are ``pytorch_model.bin`` is refused with the conversion recipe.
- Saved folders honour the umask.
- A tokenizer folder without a vocabulary is refused by name.

Recipe runs go through a fresh ``python -m recipes.<task>`` process: the remote-code bug only shows where
``modeling`` has not been imported yet, and only a subprocess shows every line a run prints.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from modeling import ForgeConfig, ForgeForSequenceClassification, ForgeForTokenClassification
from recipe_helpers import REPO_ROOT, SAMPLE_DIR, train_small_tokenizer
from recipes.publishing.export import CODE_FILES, save_hub_folder
from recipes.core.safety import redact_argv, redact_mapping
from recipes.core.srl_utils import build_srl_label_list

pytestmark = pytest.mark.filterwarnings("ignore")

SECRETS = ("SECRETVALUE123", "OTHERSECRET")
TINY = ["--per_device_eval_batch_size", "8", "--report_to", "none", "--disable_tqdm", "true",
        "--dataloader_pin_memory", "false", "--max_eval_samples", "8"]


def _run_recipe(module: str, args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "hf_modules"),
           "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=env,
                          cwd=REPO_ROOT, timeout=600)


@pytest.fixture(scope="module")
def tokenizer():
    return train_small_tokenizer()


def _tiny_config(tokenizer, **kwargs) -> ForgeConfig:
    return ForgeConfig.from_pretrained(
        "forge-tiny", vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **kwargs,
    )


@pytest.fixture(scope="module")
def sentiment_folder(tokenizer, tmp_path_factory) -> Path:
    config = _tiny_config(tokenizer, num_labels=2, id2label={0: "0", 1: "1"}, label2id={"0": 0, "1": 1})
    return save_hub_folder(ForgeForSequenceClassification(config), tokenizer, tmp_path_factory.mktemp("m") / "sentiment",
                           task="text-classification")


@pytest.fixture(scope="module")
def srl_folder(tokenizer, tmp_path_factory) -> Path:
    rows = [json.loads(line) for line in (SAMPLE_DIR / "srl" / "train.jsonl").read_text().splitlines()]
    rows += [json.loads(line) for line in (SAMPLE_DIR / "srl" / "validation.jsonl").read_text().splitlines()]
    labels = build_srl_label_list([row["tags"] for row in rows])
    config = _tiny_config(tokenizer, num_labels=len(labels), id2label=dict(enumerate(labels)),
                          label2id={label: i for i, label in enumerate(labels)})
    from tokenization import add_task_tokens

    model, srl_tokenizer = ForgeForTokenClassification(config), copy.deepcopy(tokenizer)
    add_task_tokens(srl_tokenizer, model, ["<pred>", "</pred>"])  # as recipes/srl.py does
    return save_hub_folder(model, srl_tokenizer, tmp_path_factory.mktemp("m") / "srl", task="semantic-role-labeling")


def _booby_trap(folder: Path, dest: Path) -> Path:
    """A copy of ``folder`` whose code files write a marker file and raise when imported."""
    shutil.copytree(folder, dest)
    marker = dest.parent / f"{dest.name}.EXECUTED"
    for name in CODE_FILES:
        (dest / name).write_text(
            f"from pathlib import Path\nPath({str(marker)!r}).write_text({name!r})\n"
            f"raise RuntimeError('the folder code in {name} was executed')\n"
        )
    return marker


# --------------------------------------------------------------------------------------------
# 1. No folder code runs while Forge is installed
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task, trust", [("sentiment", False), ("sentiment", True), ("srl", True)],
                         ids=["sentiment", "sentiment-trust_remote_code", "srl-predict-trust_remote_code"])
def test_eval_only_run_never_executes_the_folders_code(task, trust, sentiment_folder, srl_folder, tmp_path):
    folder = tmp_path / "model"
    marker = _booby_trap(sentiment_folder if task == "sentiment" else srl_folder, folder)
    split_flag = "--do_eval" if task == "sentiment" else "--do_predict"
    split_file = "--validation_file" if task == "sentiment" else "--test_file"
    args = ["--model_name_or_path", str(folder), split_flag, split_file, str(SAMPLE_DIR / task / "validation.jsonl"),
            "--output_dir", str(tmp_path / "out"), "--max_predict_samples", "8", *TINY]
    done = _run_recipe(f"recipes.{task}", args + (["--trust_remote_code"] if trust else []), tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    assert not marker.exists(), "the folder's own Python code ran"
    prefix = "eval" if task == "sentiment" else "predict"
    assert (tmp_path / "out" / f"{prefix}_predictions.jsonl").is_file()


def test_pipeline_of_a_folder_uses_the_installed_classes(srl_folder, tmp_path):
    from recipes.core.safety import forge_pipeline

    folder = tmp_path / "model"
    marker = _booby_trap(srl_folder, folder)
    pipe = forge_pipeline("semantic-role-labeling", folder)
    pipe({"words": ["The", "cat", "sat", "."], "predicate": 2})
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# 2. Secrets: never in a file, a log or a card; no pickle in checkpoints
# --------------------------------------------------------------------------------------------
def test_secret_flags_reach_no_file_log_or_card(tokenizer, tmp_path):
    tok_dir = tmp_path / "tok"
    tokenizer.save_pretrained(tok_dir)
    out = tmp_path / "run"
    args = [
        "--config_name", "forge-tiny", "--tokenizer_name", str(tok_dir), "--do_train", "--do_eval",
        "--train_file", str(SAMPLE_DIR / "sentiment" / "train.jsonl"),
        "--validation_file", str(SAMPLE_DIR / "sentiment" / "validation.jsonl"), "--max_train_samples", "16",
        "--max_steps", "2", "--save_steps", "1", "--per_device_train_batch_size", "8", "--logging_steps", "1",
        "--output_dir", str(out), "--hub_token", SECRETS[0], f"--token={SECRETS[1]}", "--log_level", "info", *TINY,
    ]
    done = _run_recipe("recipes.sentiment", args, tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    written = [p for p in out.rglob("*") if p.is_file()]
    assert (out / "README.md") in written and (out / "checkpoint-2" / "training_args.json") in written
    for secret in SECRETS:
        assert secret not in done.stdout and secret not in done.stderr
        leaks = [str(p) for p in written if secret.encode() in p.read_bytes()]
        assert not leaks, (secret, leaks)
    assert not [p for p in written if p.suffix == ".bin"], "a pickle was written"
    card = (out / "README.md").read_text()
    assert "--hub_token '***'" in card or "--hub_token ***" in card
    args_json = json.loads((out / "checkpoint-2" / "training_args.json").read_text())
    assert args_json["hub_token"] in ("***", "<HUB_TOKEN>") and args_json["learning_rate"] > 0


def test_redaction_is_by_name_not_by_shape():
    argv = ["--hub_token", "abc123", "--token=xyz", "--tokenizer_name", "tok", "--max_new_tokens", "5",
            "--api-key", "k1", "--password=p", "--do_train"]
    assert redact_argv(argv) == ["--hub_token", "***", "--token=***", "--tokenizer_name", "tok", "--max_new_tokens",
                                 "5", "--api-key", "***", "--password=***", "--do_train"]
    config = {"hub_token": "abc", "nested": {"token": "t", "pad_token_id": 0}, "runs": [{"secret": "s"}], "token": None}
    assert redact_mapping(config) == {"hub_token": "***", "nested": {"token": "***", "pad_token_id": 0},
                                      "runs": [{"secret": "***"}], "token": None}


def test_push_to_hub_from_the_trainer_is_refused(sentiment_folder, tmp_path):
    from recipes.core.args import ForgeTrainingArguments
    from recipes.core.safety import ForgeTrainer

    model = ForgeForSequenceClassification.from_pretrained(sentiment_folder)
    args = ForgeTrainingArguments(output_dir=str(tmp_path), push_to_hub=True, hub_token="x", report_to="none",
                                  hub_model_id="me/forge")
    with pytest.raises(ValueError, match="hub_upload.py"):
        ForgeTrainer(model=model, args=args)


# --------------------------------------------------------------------------------------------
# 4. Safetensors only
# --------------------------------------------------------------------------------------------
def test_folder_with_only_pytorch_model_bin_is_refused(sentiment_folder, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(sentiment_folder, folder)
    state = ForgeForSequenceClassification.from_pretrained(sentiment_folder).state_dict()
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    for loader in (ForgeForSequenceClassification, AutoModelForSequenceClassification):
        with pytest.raises(OSError, match=r"(?s)only pytorch_model\.bin.*weights_only=True.*safe_serialization=True"):
            loader.from_pretrained(folder)
    from recipes.core.args import ModelArguments
    from recipes.core.trainer_utils import load_model

    with pytest.raises(ValueError, match=r"(?s)only pytorch_model\.bin.*weights_only=True.*safe_serialization=True"):
        load_model(ModelArguments(model_name_or_path=str(folder)), AutoModelForSequenceClassification,
                   AutoTokenizer.from_pretrained(sentiment_folder))


# --------------------------------------------------------------------------------------------
# 5. File modes
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_saved_folder_honours_the_umask(tokenizer, tmp_path, umask, file_mode, dir_mode):
    from recipes.publishing.cards import write_model_card

    config = _tiny_config(tokenizer, num_labels=2)
    old = os.umask(umask)
    try:
        out = save_hub_folder(ForgeForSequenceClassification(config), tokenizer, tmp_path / "saved",
                              task="text-classification")
        write_model_card(out, model_name="saved", task="text-classification", metrics={"eval_accuracy": 50.0},
                         dataset_name="sample", command="python -m recipes.sentiment")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == dir_mode
    files = [p for p in out.iterdir() if p.is_file()]
    assert (out / "README.md") in files and (out / "model.safetensors") in files
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: oct(file_mode) for p in files}


# --------------------------------------------------------------------------------------------
# 7. Tokenizer folders without a vocabulary
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["empty_folder", "model_folder_without_tokenizer"])
def test_tokenizer_folder_without_vocabulary_is_refused(case, sentiment_folder, tmp_path):
    from recipes.core.args import ModelArguments
    from recipes.core.trainer_utils import load_tokenizer

    folder = tmp_path / case
    if case == "empty_folder":
        folder.mkdir()
    else:
        shutil.copytree(sentiment_folder, folder)
        for name in ("tokenizer.json", "vocab.json", "merges.txt"):
            (folder / name).unlink()
    expected = rf"(?s){re.escape(str(folder))}.*no tokenizer vocabulary.*--tokenizer_name.*python -m tokenization\.train"
    with pytest.raises(ValueError, match=expected):
        load_tokenizer(ModelArguments(model_name_or_path=str(folder)))
    if case != "empty_folder":  # the classes themselves refuse too (AutoTokenizer goes through them)
        with pytest.raises(ValueError, match=expected):
            AutoTokenizer.from_pretrained(folder)
