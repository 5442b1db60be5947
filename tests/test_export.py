"""save_hub_folder / copy_code_files: a complete folder, no silent overwrite, atomic moves, checkpoints kept."""

from __future__ import annotations

import json
import os

import pytest
import torch

from hub_folders import build_folders, read_json

pytestmark = pytest.mark.xdist_group("forge_hub_folders")


@pytest.fixture(scope="session")
def folders(tmp_path_factory):
    return build_folders(tmp_path_factory.mktemp("forge_folders"))


@pytest.fixture()
def tokenizer(folders):
    from transformers import AutoTokenizer

    import tokenization  # noqa: F401  (registers ForgeTokenizerFast)

    return AutoTokenizer.from_pretrained(folders["summarization"])


def _tiny(head: str, tokenizer, **kwargs):
    import modeling

    config = modeling.ForgeConfig.from_pretrained("forge-tiny", vocab_size=len(tokenizer), **kwargs)
    return getattr(modeling, head)(config).eval()


def test_folder_has_everything_remote_code_needs(folders):
    from recipes.publishing.export import CODE_FILES, CUSTOM_PIPELINES, MODEL_AUTO_MAP, PICKLE_SUFFIXES, TOKENIZER_AUTO_MAP

    folder = folders["summarization"]
    names = {p.name for p in folder.iterdir()}
    assert set(CODE_FILES) <= names
    assert {"model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
            "vocab.json", "merges.txt"} <= names
    assert not [n for n in names if n.endswith(PICKLE_SUFFIXES)]
    config = read_json(folder / "config.json")
    assert config["auto_map"] == MODEL_AUTO_MAP  # every head, not only the one saved
    assert config["architectures"] == ["ForgeForConditionalGeneration"]
    assert config["custom_pipelines"] == {"summarization": CUSTOM_PIPELINES["summarization"]}
    tok_config = read_json(folder / "tokenizer_config.json")
    assert tok_config["auto_map"] == TOKENIZER_AUTO_MAP
    assert tok_config["tokenizer_class"] == "ForgeTokenizerFast"
    classifier = folders["text-classification"]
    # transformers' own pipeline, named in the folder so that pipeline(model=folder) needs no task
    assert read_json(classifier / "config.json")["custom_pipelines"] == {
        "text-classification": CUSTOM_PIPELINES["text-classification"]}
    assert not (classifier / "generation_config.json").exists()


def test_round_trip_and_every_head_from_one_folder(folders, tokenizer, tmp_path):
    from transformers import (AutoModelForQuestionAnswering, AutoModelForSeq2SeqLM,
                              AutoModelForSequenceClassification, AutoModelForTokenClassification)

    from recipes.publishing.export import save_hub_folder

    model = _tiny("ForgeForConditionalGeneration", tokenizer)
    out = save_hub_folder(model, tokenizer, tmp_path / "m", task="text2text-generation")
    batch = tokenizer(["Ein Mann angelt."], return_tensors="pt")
    start = torch.full((1, 1), model.config.decoder_start_token_id)
    loaded = AutoModelForSeq2SeqLM.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch, decoder_input_ids=start).logits,
                                   model(**batch, decoder_input_ids=start).logits)
    # the encoder heads start from the seq2seq encoder
    for auto in (AutoModelForSequenceClassification, AutoModelForQuestionAnswering, AutoModelForTokenClassification):
        head = auto.from_pretrained(out)
        torch.testing.assert_close(head.model.encoder.layers[0].state_dict(),
                                   model.model.encoder.layers[0].state_dict())


def test_refuses_to_overwrite_and_keeps_checkpoints(tokenizer, tmp_path):
    from recipes.publishing.export import OutputDirExistsError, check_output_dir, save_hub_folder

    out = tmp_path / "run"
    (out / "checkpoint-2").mkdir(parents=True)
    (out / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (out / "train.log").write_text("log")
    first = _tiny("ForgeForQuestionAnswering", tokenizer)
    save_hub_folder(first, tokenizer, out, task="question-answering")
    assert (out / "config.json").is_file() and (out / "checkpoint-2" / "trainer_state.json").is_file()

    with pytest.raises(OutputDirExistsError, match="overwrite=True"):
        save_hub_folder(first, tokenizer, out)
    with pytest.raises(OutputDirExistsError):
        check_output_dir(out)

    (out / "model-00001-of-00002.safetensors").write_bytes(b"stale shard of an older save")
    second = _tiny("ForgeForSequenceClassification", tokenizer, num_labels=3)
    save_hub_folder(second, tokenizer, out, task="text-classification", overwrite=True)
    config = read_json(out / "config.json")
    assert config["architectures"] == ["ForgeForSequenceClassification"]
    assert list(config["custom_pipelines"]) == ["text-classification"]  # the earlier save's entry is not kept
    assert not (out / "model-00001-of-00002.safetensors").exists()
    assert (out / "train.log").read_text() == "log"
    assert (out / "checkpoint-2" / "trainer_state.json").is_file()
    assert not [p for p in out.parent.iterdir() if ".forge-save-" in p.name]
    assert not [p for p in out.iterdir() if ".forge-save-" in p.name]


def test_crash_mid_save_never_leaves_a_half_model(tokenizer, tmp_path, monkeypatch):
    import recipes.publishing.export as export

    out = tmp_path / "run"
    model = _tiny("ForgeForQuestionAnswering", tokenizer)
    export.save_hub_folder(model, tokenizer, out)
    (out / "checkpoint-5").mkdir()

    real_replace, calls = os.replace, []

    def dying_replace(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise OSError("disk full (simulated)")
        real_replace(src, dst)

    monkeypatch.setattr(export.os, "replace", dying_replace)
    with pytest.raises(OSError, match="simulated"):
        export.save_hub_folder(model, tokenizer, out, overwrite=True)
    monkeypatch.setattr(export.os, "replace", real_replace)
    # config.json goes last: a folder without it is visibly unfinished, never an old config over new weights
    assert not (out / "config.json").exists()
    assert not export.is_finished_model_dir(out)
    assert (out / "checkpoint-5").is_dir()
    assert not [p for p in out.iterdir() if ".forge-save-" in p.name]
    export.save_hub_folder(model, tokenizer, out)  # the next save completes it
    assert export.is_finished_model_dir(out)

    # a fresh folder is written beside and renamed: a failure leaves nothing behind
    monkeypatch.setattr(type(model), "save_pretrained", lambda *a, **k: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError, match="boom"):
        export.save_hub_folder(model, tokenizer, tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_task_must_match_the_head(tokenizer, tmp_path):
    from recipes.publishing.export import save_hub_folder

    qa = _tiny("ForgeForQuestionAnswering", tokenizer)
    with pytest.raises(ValueError, match="AutoModelForSeq2SeqLM"):
        save_hub_folder(qa, tokenizer, tmp_path / "a", task="summarization")
    with pytest.raises(ValueError, match="Unknown task"):
        save_hub_folder(qa, tokenizer, tmp_path / "b", task="summarisation")
    assert not list(tmp_path.iterdir())


def test_copy_code_files_makes_a_checkpoint_complete(tokenizer, tmp_path):
    from recipes.publishing.export import CODE_FILES, CUSTOM_PIPELINES, MODEL_AUTO_MAP, copy_code_files

    checkpoint = tmp_path / "checkpoint-10"
    model = _tiny("ForgeForQuestionAnswering", tokenizer)
    model.save_pretrained(checkpoint)  # what the Trainer writes: no code files, partial auto_map at best
    tokenizer.save_pretrained(checkpoint)
    for name in CODE_FILES:
        (checkpoint / name).unlink(missing_ok=True)
    copied = copy_code_files(checkpoint, task="question-answering")
    assert sorted(p.name for p in copied) == sorted(CODE_FILES)
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["auto_map"] == MODEL_AUTO_MAP
    assert config["custom_pipelines"] == {"question-answering": CUSTOM_PIPELINES["question-answering"]}
    assert read_json(checkpoint / "tokenizer_config.json")["auto_map"]["AutoTokenizer"][1].endswith("ForgeTokenizerFast")
    with pytest.raises(FileNotFoundError):
        copy_code_files(tmp_path / "missing")
