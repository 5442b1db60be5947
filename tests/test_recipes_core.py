"""Unit tests of the recipes' shared core: arguments, text preprocessing and augmentation, the over-long
policy, starting from a pretrained folder, the tokenizer/embedding check."""

import json
import random

import datasets
import pytest
import torch
from transformers import AutoModelForSequenceClassification

import modeling
from recipe_helpers import train_small_tokenizer, write_jsonl
from recipes.core.args import (
    ForgeSeq2SeqTrainingArguments,
    ForgeTrainingArguments,
    ModelArguments,
    QADataArguments,
    SentimentDataArguments,
    TranslationDataArguments,
    parse_args,
)
from recipes.core.data import DataValidationError, load_raw_datasets
from recipes.publishing.export import save_hub_folder
from recipes.core.tasks import (
    apply_overlong_policy,
    augment_split,
    augment_text,
    normalize_text,
    tokenize_classification,
)
from recipes.core.trainer_utils import last_complete_checkpoint, load_model


@pytest.fixture(scope="module")
def tokenizer():
    return train_small_tokenizer(vocab_size=500)


def test_parse_args_from_flags_json_and_yaml(tmp_path):
    flags = ["--output_dir", str(tmp_path), "--source_lang", "de", "--num_beams", "4", "--predict_with_generate",
             "--early_stopping_patience", "2", "--warmup_steps", "0.1"]
    model_args, data_args, training_args = parse_args(
        ModelArguments, TranslationDataArguments, ForgeSeq2SeqTrainingArguments, args=flags)
    assert data_args.num_beams == 4 and training_args.early_stopping_patience == 2
    assert training_args.warmup_steps == 0.1 and training_args.overwrite_output_dir is False
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"output_dir": str(tmp_path), "text_column": "sentence", "overwrite_output_dir": True}))
    _, data_args, training_args = parse_args(ModelArguments, SentimentDataArguments, ForgeTrainingArguments, args=[str(path)])
    assert data_args.text_column == "sentence" and training_args.overwrite_output_dir
    path.write_text(json.dumps({"output_dir": str(tmp_path), "not_a_flag": 1}))
    with pytest.raises(ValueError, match="not_a_flag"):
        parse_args(ModelArguments, SentimentDataArguments, ForgeTrainingArguments, args=[str(path)])
    with pytest.raises(ValueError, match="doc_stride"):
        QADataArguments(max_seq_length=64, doc_stride=60)


def test_recipe_training_defaults_apply_unless_given(tmp_path):
    """A task recipe's measured defaults (TaskSpec.training_defaults) replace transformers' own; a flag or a
    config-file key still wins, and --help names the recipe default."""
    import contextlib
    import io

    from recipes.core.args import build_parser, with_defaults
    from recipes.core.driver import task_argument_types
    from recipes.core.registry import get_task

    spec = get_task("translation")
    assert spec.training_defaults, "translation has measured defaults (bench/results/sweep_translation.jsonl)"
    defaults = dict(spec.training_defaults)
    types = task_argument_types(spec)
    _, _, training_args = parse_args(*types, args=["--output_dir", str(tmp_path)])
    for name, value in defaults.items():
        assert getattr(training_args, name) == value, name
    assert type(training_args) is ForgeSeq2SeqTrainingArguments  # the plain class: it pickles like any run's
    import pickle

    assert pickle.loads(pickle.dumps(training_args)).learning_rate == defaults["learning_rate"]
    _, _, training_args = parse_args(*types, args=["--output_dir", str(tmp_path), "--learning_rate", "3e-5"])
    assert training_args.learning_rate == 3e-5
    path = tmp_path / "run.yaml"
    path.write_text(f"output_dir: {tmp_path}\nlearning_rate: 2e-4\n")
    _, _, training_args = parse_args(*types, args=[str(path)])
    assert training_args.learning_rate == 2e-4
    assert training_args.weight_decay == defaults.get("weight_decay", 0.0)  # the file's silent keys: the defaults
    help_text = io.StringIO()
    with contextlib.redirect_stdout(help_text), pytest.raises(SystemExit):
        build_parser(*types).parse_args(["--help"])
    # a pretrained start gets its own rate (translation_pretrained_task_tokenizer*.jsonl: 3.1 at 1e-3, 37.7 at 5e-4)
    assert ("(this recipe's default: 0.001; from --model_name_or_path: 0.0005)"
            in " ".join(help_text.getvalue().split()))
    from recipes.core.args import apply_pretrained_defaults, given_fields

    argv = ["--model_name_or_path", str(tmp_path), "--output_dir", str(tmp_path)]
    _, _, training_args = parse_args(*types, args=argv)
    apply_pretrained_defaults(training_args, spec.pretrained_training_defaults, given_fields(*types, args=argv))
    assert training_args.learning_rate == 5e-4 and training_args.warmup_steps == defaults["warmup_steps"]
    assert with_defaults(ForgeTrainingArguments, ()) is ForgeTrainingArguments
    with pytest.raises(ValueError, match="not_a_field"):
        with_defaults(ForgeTrainingArguments, (("not_a_field", 1),))


def test_recipe_data_defaults_apply_unless_given(tmp_path):
    """TaskSpec.data_defaults (summarization's generation settings) are the task's data-argument defaults; another
    seq2seq task keeps the shared ones, a flag wins, and the model's saved generation config carries them."""
    import contextlib
    import io

    from model_tester import tiny_config
    from recipes.core.args import SummarizationDataArguments, build_parser
    from recipes.core.driver import task_argument_types
    from recipes.core.registry import get_task
    from recipes.core.seq2seq import configure_generation

    spec = get_task("summarization")
    defaults = dict(spec.data_defaults)
    assert defaults.get("no_repeat_ngram_size", 0) > 0, "stops the loops of an undertrained summariser"
    types = task_argument_types(spec)
    _, data_args, training_args = parse_args(*types, args=["--output_dir", str(tmp_path)])
    assert type(data_args) is SummarizationDataArguments
    for name, value in defaults.items():
        assert getattr(data_args, name) == value, name
    _, data_args, _ = parse_args(*types, args=["--output_dir", str(tmp_path), "--no_repeat_ngram_size", "0"])
    assert data_args.no_repeat_ngram_size == 0
    _, translation_data, _ = parse_args(*task_argument_types(get_task("translation")), args=["--output_dir", "o"])
    for name in defaults:  # not measured for translation: the shared defaults
        assert getattr(translation_data, name) == SummarizationDataArguments.__dataclass_fields__[name].default
    model = modeling.ForgeForConditionalGeneration(tiny_config())
    _, data_args, training_args = parse_args(*types, args=["--output_dir", str(tmp_path), "--num_beams", "4"])
    configure_generation(model, data_args, training_args)
    for name, value in defaults.items():
        assert getattr(model.generation_config, name) == value, name
    model.generation_config.save_pretrained(tmp_path / "beams")
    # greedy decoding has no length penalty: transformers would refuse to save a config that sets one
    _, data_args, training_args = parse_args(*types, args=["--output_dir", str(tmp_path), "--num_beams", "1"])
    configure_generation(model, data_args, training_args)
    assert model.generation_config.length_penalty == 1.0
    model.generation_config.save_pretrained(tmp_path / "greedy")
    help_text = io.StringIO()
    with contextlib.redirect_stdout(help_text), pytest.raises(SystemExit):
        build_parser(*types).parse_args(["--help"])
    assert f"(this recipe's default: {defaults['no_repeat_ngram_size']})" in " ".join(help_text.getvalue().split())


def test_given_fields_counts_what_the_user_wrote(tmp_path):
    """A run-dependent default must not replace a value the user chose, even one equal to the plain default."""
    from recipes.core.args import given_fields

    types = (ModelArguments, SentimentDataArguments, ForgeTrainingArguments)
    argv = ["--model_name_or_path", "m", "--learning_rate=1e-3", "--warmup_st", "5", "--output_dir", "o", "--do_train"]
    assert given_fields(*types, args=argv) == {"model_name_or_path", "learning_rate", "warmup_steps", "output_dir",
                                               "do_train"}
    assert given_fields(*types, args=[]) == frozenset()
    path = tmp_path / "run.yaml"
    path.write_text("output_dir: o\nweight_decay: 0.0\n")
    assert given_fields(*types, args=[str(path)]) == {"output_dir", "weight_decay"}


def test_pretrained_start_defaults_apply_unless_given(tmp_path):
    """TaskSpec.pretrained_training_defaults replace the from-scratch defaults for a run that fine-tunes
    --model_name_or_path, never a flag the user gave, and --help names both."""
    import contextlib
    import io

    from recipes.core.args import apply_pretrained_defaults, build_parser, given_fields, with_defaults

    scratch, pretrained = (("learning_rate", 1e-3), ("warmup_steps", 200)), (("learning_rate", 2e-4),)
    types = (ModelArguments, SentimentDataArguments, with_defaults(ForgeTrainingArguments, scratch, pretrained))
    for argv, expected in ((["--output_dir", str(tmp_path)], 2e-4),
                           (["--output_dir", str(tmp_path), "--learning_rate", "1e-3"], 1e-3)):
        _, _, training_args = parse_args(*types, args=argv)
        changed = apply_pretrained_defaults(training_args, pretrained, given_fields(*types, args=argv))
        assert training_args.learning_rate == expected and training_args.warmup_steps == 200
        assert changed == ({"learning_rate": 2e-4} if expected == 2e-4 else {})
    help_text = io.StringIO()
    with contextlib.redirect_stdout(help_text), pytest.raises(SystemExit):
        build_parser(*types).parse_args(["--help"])
    assert "(this recipe's default: 0.001; from --model_name_or_path: 0.0002)" in " ".join(help_text.getvalue().split())


def test_config_overrides_and_dropout_knobs():
    args = ModelArguments(dropout=0.2, config_overrides="d_model=48, norm_type=rmsnorm,tie_word_embeddings=false")
    assert args.config_kwargs() == {"dropout": 0.2, "d_model": 48, "norm_type": "rmsnorm", "tie_word_embeddings": False}
    with pytest.raises(ValueError, match="key=value"):
        ModelArguments(config_overrides="d_model").config_kwargs()


def test_normalize_text_lowercase_and_stop_words():
    assert normalize_text("The Film IS great", lowercase=True) == "the film is great"
    assert normalize_text("the film is not great", remove_stopwords=True) == "film great"
    assert normalize_text("the of and", remove_stopwords=True) == "the of and"  # never empties a text
    assert normalize_text("Keep As Is") == "Keep As Is"


def test_augmentation_is_deterministic_and_label_preserving():
    text = "a b c d e f g h"
    assert augment_text(text, "word_dropout", 0.5, random.Random(1)) == augment_text(text, "word_dropout", 0.5, random.Random(1))
    dropped = augment_text(text, "word_dropout", 1.0, random.Random(0))
    assert len(dropped.split()) == 1
    swapped = augment_text(text, "swap", 1.0, random.Random(0))
    assert swapped == "b a d c f e h g" and sorted(swapped.split()) == sorted(text.split())
    ds = datasets.Dataset.from_dict({"text": [text, "x y"], "label": [0, 1]})
    out = augment_split(ds, "text", "swap", 0.5, copies=2, seed=3)
    assert len(out) == 6 and out["label"] == [0, 1] * 3
    assert out["text"] == augment_split(ds, "text", "swap", 0.5, copies=2, seed=3)["text"]


def test_overlong_policy_truncate_drop_error(tokenizer, tmp_path):
    rows = [{"text": "short one", "label": 0}, {"text": "a much longer text " * 10, "label": 1}, {"text": "ok", "label": 1}]
    data_args = SentimentDataArguments(train_file=str(write_jsonl(tmp_path / "train.jsonl", rows)))
    raw = load_raw_datasets(data_args, cache_dir=str(tmp_path / "cache"))

    def features():
        return raw["train"].map(tokenize_classification, batched=True, remove_columns=["text", "label"], fn_kwargs=dict(
            tokenizer=tokenizer, text_column="text", label_column="label", label2id={0: 0, 1: 1}, max_length=8))

    kept = apply_overlong_policy(features(), raw, "train", "truncate", "max_seq_length", 8)
    assert len(kept) == 3 and max(len(ids) for ids in kept["input_ids"]) == 8
    assert kept["input_ids"][1][-1] == tokenizer.eos_token_id  # the cut keeps </s>
    with pytest.raises(DataValidationError, match=r"train.jsonl line 2"):
        apply_overlong_policy(features(), raw, "train", "error", "max_seq_length", 8)
    dropped = apply_overlong_policy(features(), raw, "train", "drop", "max_seq_length", 8)
    assert dropped["labels"] == [0, 1] and raw["train"]["text"] == ["short one", "ok"]  # raw filtered alike


def test_start_from_a_pretrained_folder_keeps_the_encoder(tokenizer, tmp_path):
    config = modeling.ForgeConfig.from_pretrained("forge-tiny", vocab_size=len(tokenizer))
    pretrained = modeling.ForgeForConditionalGeneration(config)
    save_hub_folder(pretrained, tokenizer, tmp_path / "pre")
    model = load_model(ModelArguments(model_name_or_path=str(tmp_path / "pre"), classifier_dropout=0.3),
                       AutoModelForSequenceClassification, tokenizer, num_labels=3)
    assert model.config.num_labels == 3 and model.config.classifier_dropout == 0.3
    torch.testing.assert_close(model.model.shared.weight, pretrained.model.shared.weight)
    first = next(k for k in pretrained.state_dict() if k.startswith("model.encoder.layers.0"))
    torch.testing.assert_close(model.state_dict()[first], pretrained.state_dict()[first])


def test_tokenizer_larger_than_embeddings_is_refused(tokenizer, tmp_path):
    small = modeling.ForgeForConditionalGeneration(modeling.ForgeConfig.from_pretrained("forge-tiny", vocab_size=300))
    small.save_pretrained(tmp_path / "small")
    with pytest.raises(ValueError, match="embedding has 300 rows"):
        load_model(ModelArguments(model_name_or_path=str(tmp_path / "small")), AutoModelForSequenceClassification,
                   tokenizer, num_labels=2)


def test_last_complete_checkpoint_skips_half_written_ones(tmp_path):
    for step, complete in ((4, True), (8, True), (12, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-8")
    assert last_complete_checkpoint(tmp_path / "missing") is None


def test_translation_dict_column_and_language_checks(tmp_path):
    from recipes.core.tasks import translation_pairs, validate_for_task

    rows = [{"translation": {"de": "Ein Hund.", "en": "A dog."}}, {"translation": {"de": "Eine Katze.", "en": "A cat."}}]
    data_args = TranslationDataArguments(train_file=str(write_jsonl(tmp_path / "train.jsonl", rows)))
    raw = load_raw_datasets(data_args, cache_dir=str(tmp_path / "cache"))
    validate_for_task("translation", raw, data_args)
    assert translation_pairs(raw["train"][:], data_args) == (["Ein Hund.", "Eine Katze."], ["A dog.", "A cat."])
    data_args = TranslationDataArguments(train_file=data_args.train_file, source_lang="fr")
    with pytest.raises(DataValidationError, match=r"train.jsonl line 1: no text for language\(s\) \['fr'\]"):
        validate_for_task("translation", raw, data_args)
