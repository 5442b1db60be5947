"""recipes.core.trainer_utils.load_model: pretrained weights are never silently re-initialised."""

from __future__ import annotations

import pytest
from transformers import AutoModelForSequenceClassification

import modeling  # noqa: F401
from modeling import ForgeConfig, ForgeForConditionalGeneration, ForgeForSequenceClassification
from recipe_helpers import train_small_tokenizer
from recipes.core.args import ModelArguments
from recipes.core.trainer_utils import load_model


@pytest.fixture(scope="module")
def tokenizer():
    return train_small_tokenizer(600)


def _args(folder, **kwargs) -> ModelArguments:
    return ModelArguments(model_name_or_path=str(folder), **kwargs)


def test_label_count_change_needs_the_flag(tmp_path, tokenizer):
    config = ForgeConfig.from_pretrained("forge-tiny", vocab_size=len(tokenizer), num_labels=2)
    ForgeForSequenceClassification(config).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"classifier\.out_proj\.(bias|weight).*--ignore_mismatched_sizes"):
        load_model(_args(tmp_path), AutoModelForSequenceClassification, tokenizer, num_labels=3)
    model = load_model(_args(tmp_path, ignore_mismatched_sizes=True), AutoModelForSequenceClassification, tokenizer,
                       num_labels=3)
    assert model.config.num_labels == 3


def test_config_override_that_changes_d_model_is_refused(tmp_path, tokenizer):
    config = ForgeConfig.from_pretrained("forge-tiny", vocab_size=len(tokenizer))
    ForgeForConditionalGeneration(config).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="do not fit the model being built.*--config_overrides"):
        load_model(_args(tmp_path, config_overrides="d_model=48,encoder_ffn_dim=96,decoder_ffn_dim=96"),
                   AutoModelForSequenceClassification, tokenizer, num_labels=2)


def test_new_task_head_is_not_a_mismatch(tmp_path, tokenizer):
    """A pretrained seq2seq folder gets a fresh classification head: missing, not mismatched, so no flag needed."""
    config = ForgeConfig.from_pretrained("forge-tiny", vocab_size=len(tokenizer))
    ForgeForConditionalGeneration(config).save_pretrained(tmp_path)
    model = load_model(_args(tmp_path), AutoModelForSequenceClassification, tokenizer, num_labels=2)
    assert model.config.num_labels == 2
