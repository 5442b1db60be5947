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


def test_task_preset_defaults_apply_to_a_preset_only_and_config_overrides_win(tmp_path, tokenizer):
    """Translation builds forge-* presets post-norm (its measured default); --config_overrides wins; a pretrained
    folder and a config folder keep what they say (pre-norm here)."""
    from transformers import AutoModelForSeq2SeqLM

    from recipes.core.registry import get_task

    defaults = dict(get_task("translation").preset_config_defaults)
    assert defaults == {"norm_position": "post"}
    built = load_model(ModelArguments(config_name="forge-tiny"), AutoModelForSeq2SeqLM, tokenizer,
                       preset_defaults=defaults)
    assert built.config.norm_position == "post" and built.model.encoder.embed_norm is not None
    chosen = load_model(ModelArguments(config_name="forge-tiny", config_overrides="norm_position=pre"),
                        AutoModelForSeq2SeqLM, tokenizer, preset_defaults=defaults)
    assert chosen.config.norm_position == "pre"
    assert load_model(ModelArguments(config_name="forge-tiny"), AutoModelForSeq2SeqLM, tokenizer).config.norm_position == "pre"
    ForgeConfig.from_pretrained("forge-tiny", vocab_size=len(tokenizer)).save_pretrained(tmp_path / "config")
    from_folder = load_model(ModelArguments(config_name=str(tmp_path / "config")), AutoModelForSeq2SeqLM, tokenizer,
                             preset_defaults=defaults)
    assert from_folder.config.norm_position == "pre"
    ForgeForConditionalGeneration(ForgeConfig.from_pretrained("forge-tiny", vocab_size=len(tokenizer))).save_pretrained(
        tmp_path / "pretrained")
    assert load_model(_args(tmp_path / "pretrained"), AutoModelForSeq2SeqLM, tokenizer,
                      preset_defaults=defaults).config.norm_position == "pre"


def test_srl_builds_rotary_forge_and_leaves_the_bart_control_its_learned_positions(tokenizer):
    """SRL's preset defaults (rotary positions, BiLSTM mixers, the predicate context) are Forge's; the BART control,
    which cannot mirror them, is built as before instead of refused."""
    from transformers import AutoModelForTokenClassification

    from recipes.core.registry import get_task

    defaults = dict(get_task("srl").preset_config_defaults)
    assert defaults == {"position_embedding_type": "rotary", "encoder_mixer": "recurrent", "recurrent_cell": "lstm",
                        "classifier_predicate_context": True}
    forge = load_model(ModelArguments(config_name="forge-tiny"), AutoModelForTokenClassification, tokenizer,
                       preset_defaults=defaults, num_labels=3)
    assert forge.config.position_embedding_type == "rotary" and forge.config.classifier_predicate_context
    assert {type(layer.mixer).__name__ for layer in forge.model.encoder.layers} == {"ForgeRecurrent"}
    bart = load_model(ModelArguments(config_name="forge-tiny", architecture="bart"), AutoModelForTokenClassification,
                      tokenizer, preset_defaults=defaults, num_labels=3)
    assert bart.config.model_type == "bart" and bart.config.num_labels == 3


def test_qa_marks_shared_tokens_in_a_preset_build_and_on_request_in_a_pretrained_start(tmp_path, tokenizer):
    """QA's preset default (qa_lexical_match) is Forge's; the BART control is built as before; a pretrained seq2seq
    folder gets the match vector as a new (missing, not mismatched) weight when asked, its own weights loaded."""
    from transformers import AutoModelForQuestionAnswering

    from recipes.core.registry import get_task

    defaults = dict(get_task("qa").preset_config_defaults)
    assert defaults["qa_lexical_match"] is True and defaults["recurrent_cell"] == "lstm"
    forge = load_model(ModelArguments(config_name="forge-tiny"), AutoModelForQuestionAnswering, tokenizer,
                       preset_defaults=defaults)
    assert forge.config.qa_lexical_match and forge.lexical_match is not None
    # the lower half of the encoder's layers recurrent, whatever the depth (--config_overrides included)
    assert forge.config.encoder_mixer == ["recurrent", "attention"]
    assert type(forge.model.encoder.layers[0].mixer).__name__ == "ForgeRecurrent"
    deeper = load_model(ModelArguments(config_name="forge-tiny", config_overrides="encoder_layers=4"),
                        AutoModelForQuestionAnswering, tokenizer, preset_defaults=defaults)
    assert deeper.config.encoder_mixer == ["recurrent", "recurrent", "attention", "attention"]
    assert deeper.config.recurrent_cell == "lstm"
    chosen = load_model(ModelArguments(config_name="forge-tiny", config_overrides="encoder_mixer=attention"),
                        AutoModelForQuestionAnswering, tokenizer, preset_defaults=defaults)
    assert chosen.config.encoder_mixer == "attention"
    bart = load_model(ModelArguments(config_name="forge-tiny", architecture="bart"), AutoModelForQuestionAnswering,
                      tokenizer, preset_defaults=defaults)
    assert bart.config.model_type == "bart"
    pretrained = ForgeForConditionalGeneration(ForgeConfig.from_pretrained("forge-tiny", vocab_size=len(tokenizer)))
    pretrained.save_pretrained(tmp_path)
    plain = load_model(_args(tmp_path), AutoModelForQuestionAnswering, tokenizer, preset_defaults=defaults)
    assert not plain.config.qa_lexical_match and plain.lexical_match is None  # a folder keeps its own setting
    marked = load_model(_args(tmp_path), AutoModelForQuestionAnswering, tokenizer, qa_lexical_match=True)
    assert marked.lexical_match is not None
    assert (marked.model.shared.weight == pretrained.model.shared.weight).all()
