"""The causes behind messages that read like failures, fixed where they arise (issue 18, point 2)."""

import json
import logging

import pytest
import safetensors.torch

import modeling
from modeling import ForgeConfig, ForgeForConditionalGeneration, ForgeForSequenceClassification


@pytest.mark.parametrize("tied", [True, False])
def test_reloading_a_checkpoint_with_a_tied_lm_head_is_recognised(tmp_path, tied):
    """What Trainer._load_best_model does: load_state_dict(strict=False) of the saved file. A tied lm_head is not in
    the file; the model declares it in _keys_to_ignore_on_save, so the Trainer re-ties instead of warning."""
    config = ForgeConfig.from_pretrained("forge-tiny", vocab_size=64, tie_word_embeddings=tied)
    ForgeForConditionalGeneration(config).save_pretrained(tmp_path)
    state = safetensors.torch.load_file(tmp_path / "model.safetensors")
    fresh = ForgeForConditionalGeneration(config)
    result = fresh.load_state_dict(state, strict=False)
    assert set(result.missing_keys) == set(fresh._keys_to_ignore_on_save)  # the Trainer's own test
    assert ("lm_head.weight" in state) is not tied
    assert (fresh.lm_head.weight is fresh.model.shared.weight) is tied


def test_new_task_head_is_one_plain_line(tmp_path, caplog):
    from recipes.core.console import report_loading, transformers_quiet

    config = ForgeConfig.from_pretrained("forge-tiny", vocab_size=64)
    ForgeForConditionalGeneration(config).save_pretrained(tmp_path)
    with transformers_quiet():
        model, info = ForgeForSequenceClassification.from_pretrained(tmp_path, num_labels=2, output_loading_info=True)
    with caplog.at_level(logging.INFO, logger="recipes"):
        report_loading(model, info, str(tmp_path))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("New ForgeForSequenceClassification head initialised")
    assert "classifier.dense, classifier.out_proj" in lines[0] and caplog.records[0].levelno == logging.INFO


def test_saved_generation_config_limits_new_tokens_not_length(tmp_path):
    """A pipeline call with max_new_tokens must not meet a saved max_length ("Both ... seem to have been set")."""
    from tokenization import ForgeTokenizerFast

    from recipes.publishing.export import save_hub_folder

    tokenizer = ForgeTokenizerFast().train_new_from_iterator(["a small corpus for a tiny tokenizer"] * 4, vocab_size=400)
    model = ForgeForConditionalGeneration(ForgeConfig.from_pretrained("forge-tiny", vocab_size=len(tokenizer)))
    model.generation_config.max_length = 64  # what the recipes set for evaluation
    save_hub_folder(model, tokenizer, tmp_path / "out", task="summarization")
    saved = json.loads((tmp_path / "out" / "generation_config.json").read_text())
    assert "max_length" not in saved and saved["max_new_tokens"] == 63
    assert model.generation_config.max_length == 64  # the model in memory is left alone


def test_no_pin_memory_without_an_accelerator():
    from recipes.core.args import ForgeTrainingArguments
    from recipes.core.console import has_accelerator, quiet_start

    args = ForgeTrainingArguments(output_dir="unused", report_to="none")
    quiet_start(args)
    assert args.dataloader_pin_memory is has_accelerator()
