"""Argument dataclasses shared by every recipe, and one parser for command line / JSON / YAML.

The flag names follow the transformers example scripts (`run_glue.py`, `run_translation.py`,
`run_qa.py`, ...), so a user who knows those finds the same switches here. Task-specific data
options live in small subclasses of :class:`DataArguments`, so each recipe's ``--help`` shows only
what applies to it.

Usage::

    from recipes.core.args import ModelArguments, SentimentDataArguments, ForgeTrainingArguments, parse_args
    model_args, data_args, training_args = parse_args(
        ModelArguments, SentimentDataArguments, ForgeTrainingArguments, args=argv)

``argv`` may be a normal flag list, or a list holding a single ``.json`` / ``.yaml`` / ``.yml``
path whose keys are the flag names (without dashes).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from transformers import HfArgumentParser, Seq2SeqTrainingArguments, TrainingArguments

from ..privacy.dp import DPArguments

from .distributed import prepare_launch

__all__ = [
    "ModelArguments",
    "DataArguments",
    "SentimentDataArguments",
    "Seq2SeqDataArguments",
    "TranslationDataArguments",
    "SummarizationDataArguments",
    "QADataArguments",
    "SRLDataArguments",
    "ForgeTrainingArguments",
    "ForgeSeq2SeqTrainingArguments",
    "build_parser",
    "parse_args",
]

CONFIG_FILE_SUFFIXES = (".json", ".yaml", ".yml")


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------
@dataclass
class ModelArguments:
    """Which model, config and tokenizer to start from."""

    model_name_or_path: Optional[str] = field(
        default=None,
        metadata={
            "help": "A pretrained Forge folder (or Hub repo id) to fine-tune. Leave empty to train "
            "from scratch from --config_name."
        },
    )
    config_name: Optional[str] = field(
        default=None,
        metadata={
            "help": "A Forge preset name (forge-tiny, forge-small, forge-base, forge-large, forge-xl) or "
            "a config folder/file. Used when training from scratch, or to override the config of "
            "--model_name_or_path."
        },
    )
    tokenizer_name: Optional[str] = field(
        default=None,
        metadata={
            "help": "Tokenizer folder or Hub repo id. Defaults to --model_name_or_path. Required when "
            "training from scratch with a preset."
        },
    )
    cache_dir: Optional[str] = field(
        default=None,
        metadata={"help": "Where to cache models, tokenizers and datasets downloaded from the Hub."},
    )
    model_revision: str = field(
        default="main",
        metadata={"help": "Hub revision (branch, tag or commit) of the model; pin a commit for reproducibility."},
    )
    token: Optional[str] = field(
        default=None,
        metadata={
            "help": "Hugging Face token for private repos. Prefer the HF_TOKEN environment variable or "
            "`hf auth login`; the value is never logged or written."
        },
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={
            "help": "Allow code files from a model folder/repo to run (needed for Forge folders when the "
            "forge package is not installed). Only enable for sources you trust."
        },
    )
    architecture: str = field(
        default="forge",
        metadata={
            "help": "Which network to train: 'forge' or 'bart' (transformers' own BART of the same shape as the "
            "Forge preset/config, through the same data path, tokenizer and Trainer settings: the control that "
            "tells a Forge defect from a budget limit). With --model_name_or_path, a folder of that architecture.",
            "choices": ["forge", "bart"],
        },
    )
    init_embeddings: Optional[str] = field(
        default=None,
        metadata={
            "help": "GloVe / word2vec text file: embedding rows of vocabulary tokens found there are initialised "
            "from it (padded or projected to d_model, scaled to the model's own token-embedding init). Models "
            "trained from scratch (--config_name) only; coverage is logged and written to the model card."
        },
    )
    freeze_embeddings: bool = field(
        default=False,
        metadata={
            "help": "Keep the token embedding fixed during training (and the output layer tied to it): the classic "
            "choice for GloVe / word2vec rows (--init_embeddings) on little data, and for DP-SGD (--dp_epsilon), "
            "where Opacus would otherwise hold every example's gradient of the whole vocabulary table. Position "
            "tables and task heads still train."
        },
    )
    ignore_mismatched_sizes: bool = field(
        default=False,
        metadata={
            "help": "Re-initialise weights of --model_name_or_path whose shape differs from the model being built "
            "(e.g. a classifier with another number of labels, or a --config_overrides that changes d_model). "
            "Without it such a mismatch is an error that names the weights."
        },
    )
    config_overrides: Optional[str] = field(
        default=None,
        metadata={
            "help": "Comma-separated config overrides applied when building the config, e.g. "
            "'d_model=64,encoder_layers=2' or 'encoder_mixer=conv'. Values are parsed as int/float/bool when "
            "possible; a list is written in brackets: 'encoder_mixer=[conv,conv,attention,attention]'."
        },
    )
    dropout: Optional[float] = field(
        default=None, metadata={"help": "Override the config's dropout probability (regularisation knob)."}
    )
    attention_dropout: Optional[float] = field(
        default=None, metadata={"help": "Override the config's attention dropout probability."}
    )
    classifier_dropout: Optional[float] = field(
        default=None, metadata={"help": "Override the dropout before task heads (classification/QA/SRL)."}
    )

    use_lora: bool = field(
        default=False,
        metadata={
            "help": "Fine-tune with PEFT LoRA: low-rank adapters on the attention and feed-forward projections, the "
            "task head trained in full. The output folder holds the merged model; the adapter alone is in "
            "<output_dir>/lora_adapter (PeftModel.from_pretrained(base, that folder))."
        },
    )
    lora_r: int = field(default=8, metadata={"help": "--use_lora: rank of the adapters."})
    lora_alpha: int = field(default=16, metadata={"help": "--use_lora: scaling numerator (the update is alpha/r x BA)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "--use_lora: dropout on the adapters' input."})
    lora_target_modules: Optional[str] = field(
        default=None,
        metadata={
            "help": "--use_lora: comma-separated projections to adapt, from qkv_proj, q_proj, kv_proj, out_proj, "
            "fc1, fc2, in_proj (conv mixers) (default: all of them, in every encoder and decoder layer)."
        },
    )

    def __post_init__(self) -> None:
        if self.architecture not in ("forge", "bart"):
            raise ValueError(f"--architecture must be 'forge' or 'bart', got {self.architecture!r}.")

    def config_kwargs(self) -> dict[str, Any]:
        """Config keyword overrides collected from the dropout knobs and --config_overrides."""
        kwargs: dict[str, Any] = {}
        for name in ("dropout", "attention_dropout", "classifier_dropout"):
            value = getattr(self, name)
            if value is not None:
                if not 0.0 <= value < 1.0:
                    raise ValueError(f"--{name} must be in [0, 1), got {value}.")
                kwargs[name] = value
        if self.config_overrides:
            for item in _split_overrides(self.config_overrides):
                if not item.strip():
                    continue
                if "=" not in item:
                    raise ValueError(
                        f"--config_overrides item {item!r} is not of the form key=value "
                        "(example: 'd_model=64,encoder_layers=2')."
                    )
                key, raw = (part.strip() for part in item.split("=", 1))
                kwargs[key] = _parse_scalar(raw)
        return kwargs


def _split_overrides(text: str) -> list[str]:
    """Split 'a=1,b=[x,y]' at the commas outside brackets: ['a=1', 'b=[x,y]']."""
    items, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    if depth != 0:
        raise ValueError(f"--config_overrides {text!r} has unbalanced brackets; write lists as 'key=[a,b,c]'.")
    return items + [current]


def _parse_scalar(raw: str) -> Any:
    """Turn '3' -> 3, '0.1' -> 0.1, 'true' -> True, 'none' -> None, '[a,b]' -> ['a', 'b']; anything else stays a
    string."""
    if raw.startswith("[") and raw.endswith("]"):
        return [_parse_scalar(part.strip()) for part in raw[1:-1].split(",") if part.strip()]
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


# --------------------------------------------------------------------------------------------
# Data (common part)
# --------------------------------------------------------------------------------------------
# Length bucket under --torch_compile: few enough shapes to compile each once, little padding wasted.
COMPILE_PAD_MULTIPLE = 32


@dataclass
class DataArguments:
    """Where the data comes from and how much of it to use (common to every recipe)."""

    dataset_name: Optional[str] = field(
        default=None, metadata={"help": "A dataset on the Hugging Face Hub (instead of local files)."}
    )
    dataset_config_name: Optional[str] = field(
        default=None, metadata={"help": "The configuration (subset) name of --dataset_name."}
    )
    dataset_revision: Optional[str] = field(
        default=None, metadata={"help": "Hub revision of --dataset_name; pin a commit for reproducibility."}
    )
    train_file: Optional[str] = field(
        default=None, metadata={"help": "Training data file: .jsonl/.json, .csv/.tsv, .parquet or .txt."}
    )
    validation_file: Optional[str] = field(
        default=None, metadata={"help": "Validation data file (same formats as --train_file)."}
    )
    test_file: Optional[str] = field(
        default=None, metadata={"help": "Test/prediction data file (same formats as --train_file)."}
    )
    streaming: bool = field(
        default=False,
        metadata={"help": "Stream the data instead of loading it into an Arrow cache (corpora larger than disk/memory)."},
    )
    validation_split_percentage: Optional[int] = field(
        default=None,
        metadata={
            "help": "When there is no validation split, carve this percentage off the training split "
            "(seeded by --seed). Off by default."
        },
    )
    max_train_samples: Optional[int] = field(
        default=None, metadata={"help": "Use only the first N training examples (debugging, quick runs)."}
    )
    max_eval_samples: Optional[int] = field(
        default=None, metadata={"help": "Use only the first N validation examples."}
    )
    max_predict_samples: Optional[int] = field(
        default=None, metadata={"help": "Use only the first N test examples."}
    )
    preprocessing_num_workers: Optional[int] = field(
        default=None, metadata={"help": "Processes for tokenisation with datasets.map (None: in-process)."}
    )
    overwrite_cache: bool = field(
        default=False, metadata={"help": "Recompute preprocessing instead of reusing the datasets cache."}
    )
    overlong_policy: str = field(
        default="truncate",
        metadata={
            "help": "What to do with inputs longer than the length limits: 'truncate' (cut and log a "
            "warning with the count; where cutting would corrupt labels, e.g. a QA answer or SRL words "
            "past the limit, it is an error instead), 'drop' (skip such examples with a warning) or "
            "'error' (stop and name the examples).",
            "choices": ["truncate", "drop", "error"],
        },
    )

    pad_to_multiple_of: Optional[int] = field(
        default=None,
        metadata={
            "help": "Pad each batch's length up to a multiple of this many tokens, so batches come in a few "
            "bucket shapes. Default: 32 with --torch_compile true (each bucket then compiles once, instead of a "
            "recompile for every new length), otherwise no rounding (each batch padded to its longest row)."
        },
    )

    def collator_pad_multiple(self, training_args) -> Optional[int]:
        """The ``pad_to_multiple_of`` for the data collator: the flag, else 32 when compiling, else None."""
        if self.pad_to_multiple_of is not None:
            return self.pad_to_multiple_of
        return COMPILE_PAD_MULTIPLE if getattr(training_args, "torch_compile", False) else None

    def __post_init__(self) -> None:
        if self.pad_to_multiple_of is not None and self.pad_to_multiple_of < 1:
            raise ValueError(f"--pad_to_multiple_of must be a positive number of tokens, got {self.pad_to_multiple_of}.")
        if self.overlong_policy not in ("truncate", "drop", "error"):
            raise ValueError(
                f"--overlong_policy must be one of truncate, drop, error; got {self.overlong_policy!r}."
            )
        for name in ("max_train_samples", "max_eval_samples", "max_predict_samples"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"--{name} must be a positive integer, got {value}.")
        if self.validation_split_percentage is not None and not 0 < self.validation_split_percentage < 100:
            raise ValueError(
                f"--validation_split_percentage must be between 1 and 99, got {self.validation_split_percentage}."
            )

    def data_files(self) -> dict[str, str]:
        """The local files given, keyed by split name."""
        files = {"train": self.train_file, "validation": self.validation_file, "test": self.test_file}
        return {split: path for split, path in files.items() if path}


# --------------------------------------------------------------------------------------------
# Data (per task)
# --------------------------------------------------------------------------------------------
@dataclass
class SentimentDataArguments(DataArguments):
    """Text classification (sentiment): one text column (optionally a second one) and a label column."""

    text_column: str = field(default="text", metadata={"help": "Column holding the text to classify."})
    text_pair_column: Optional[str] = field(
        default=None, metadata={"help": "Optional second text column (sentence-pair classification)."}
    )
    label_column: str = field(default="label", metadata={"help": "Column holding the label (int or string)."})
    class_names: Optional[str] = field(
        default=None,
        metadata={
            "help": "Comma-separated human-readable names for the labels in sorted order, e.g. "
            "'negative,positive' for 0/1 labels. Default: the label values themselves."
        },
    )
    max_seq_length: int = field(default=128, metadata={"help": "Maximum input length in tokens."})
    lowercase: bool = field(default=False, metadata={"help": "Lower-case the text before tokenisation."})
    remove_stopwords: bool = field(
        default=False,
        metadata={
            "help": "Drop English stop words (scikit-learn's ENGLISH_STOP_WORDS) before tokenisation. Note "
            "that list contains negations such as 'not' and 'no', which matter for sentiment."
        },
    )
    augment: str = field(
        default="none",
        metadata={
            "help": "Training-data augmentation: 'none', 'word_dropout' (drop each word with probability "
            "--augment_prob, keeping at least one) or 'swap' (swap adjacent words with probability "
            "--augment_prob). Augmented copies are added to the training set; evaluation data is untouched.",
            "choices": ["none", "word_dropout", "swap"],
        },
    )
    augment_prob: float = field(default=0.1, metadata={"help": "Probability used by --augment."})
    augment_copies: int = field(
        default=1, metadata={"help": "How many augmented copies of each training example to add."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.augment not in ("none", "word_dropout", "swap"):
            raise ValueError(f"--augment must be none, word_dropout or swap; got {self.augment!r}.")
        if not 0.0 <= self.augment_prob <= 1.0:
            raise ValueError(f"--augment_prob must be in [0, 1], got {self.augment_prob}.")


@dataclass
class Seq2SeqDataArguments(DataArguments):
    """Common options of the text-to-text recipes (translation, summarization)."""

    max_source_length: int = field(default=256, metadata={"help": "Maximum source length in tokens."})
    max_target_length: int = field(
        default=128, metadata={"help": "Maximum target length in tokens (training labels)."}
    )
    val_max_target_length: Optional[int] = field(
        default=None,
        metadata={
            "help": "Maximum length of generated text at evaluation/prediction time. Defaults to "
            "--max_target_length (it overrides --generation_max_length)."
        },
    )
    source_prefix: Optional[str] = field(
        default=None, metadata={"help": "Text put in front of every source (e.g. 'summarize: ')."}
    )
    num_beams: Optional[int] = field(
        default=None,
        metadata={"help": "Beam size for evaluation/prediction (overrides --generation_num_beams)."},
    )
    length_penalty: float = field(
        default=1.0,
        metadata={"help": "Beam-search length penalty: >1 favours longer outputs, <1 shorter ones."},
    )
    no_repeat_ngram_size: int = field(
        default=0, metadata={"help": "Forbid repeating n-grams of this size in generated text (0: off)."}
    )
    copy_attention: Optional[bool] = field(
        default=None,
        metadata={
            "help": "A pointer-generator output layer (ForgeConfig.copy_attention, See et al. 2017): each step mixes "
            "the vocabulary softmax with an attention over the source tokens, so the model can copy them. Default: "
            "the model's own setting (off for a preset); pass true to add it to a pretrained start."
        },
    )


@dataclass
class TranslationDataArguments(Seq2SeqDataArguments):
    """Translation: a `translation` column of {lang: text} dicts, or one column per language."""

    source_lang: str = field(default="de", metadata={"help": "Source language code (e.g. de)."})
    target_lang: str = field(default="en", metadata={"help": "Target language code (e.g. en)."})
    translation_column: str = field(
        default="translation",
        metadata={
            "help": "Column of {lang_code: text} dicts. When absent from the data, the columns named "
            "--source_lang and --target_lang are used instead."
        },
    )


@dataclass
class SummarizationDataArguments(Seq2SeqDataArguments):
    """Summarization: a document column and a summary column."""

    text_column: str = field(default="document", metadata={"help": "Column holding the document."})
    summary_column: str = field(default="summary", metadata={"help": "Column holding the reference summary."})
    id_column: Optional[str] = field(
        default="id", metadata={"help": "Optional id column copied into the predictions file."}
    )
    min_target_length: int = field(
        default=0, metadata={"help": "Minimum generated length in tokens at evaluation/prediction time."}
    )


@dataclass
class QADataArguments(DataArguments):
    """Extractive QA in SQuAD format (id, question, context, answers={text, answer_start})."""

    question_column: str = field(default="question", metadata={"help": "Column holding the question."})
    context_column: str = field(default="context", metadata={"help": "Column holding the context passage."})
    answer_column: str = field(
        default="answers", metadata={"help": "Column of {'text': [...], 'answer_start': [...]} dicts."}
    )
    id_column: str = field(default="id", metadata={"help": "Column holding a unique example id."})
    max_seq_length: int = field(
        default=384, metadata={"help": "Window length in tokens (question + context window + special tokens)."}
    )
    doc_stride: int = field(
        default=128, metadata={"help": "Overlap in tokens between consecutive context windows."}
    )
    max_question_length: int = field(
        default=64,
        metadata={"help": "Questions longer than this many tokens are cut (with a warning)."},
    )
    n_best_size: int = field(
        default=20, metadata={"help": "Start/end candidates considered per window in post-processing."}
    )
    max_answer_length: int = field(
        default=30, metadata={"help": "Longest answer span in tokens considered in post-processing."}
    )
    version_2_with_negative: Optional[bool] = field(
        default=None,
        metadata={
            "help": "SQuAD v2 style: some questions have no answer. Default: detected from the data "
            "(any example with an empty answer list)."
        },
    )
    null_score_diff_threshold: float = field(
        default=0.0,
        metadata={
            "help": "v2 only: predict 'no answer' when null score - best span score > this threshold."
        },
    )
    lexical_match: Optional[bool] = field(
        default=None,
        metadata={
            "help": "Mark the tokens the question and the context share (ForgeConfig.qa_lexical_match, DrQA's "
            "exact-match feature). Default: on for a model built from a preset (--config_name); a pretrained or "
            "fine-tuned folder keeps its own setting, so pass true to add it to a pretrained start."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.doc_stride >= self.max_seq_length - self.max_question_length - 3:
            raise ValueError(
                f"--doc_stride ({self.doc_stride}) must be smaller than the context part of a window "
                f"(--max_seq_length {self.max_seq_length} - --max_question_length "
                f"{self.max_question_length} - 3 special tokens); lower --doc_stride."
            )


@dataclass
class SRLDataArguments(DataArguments):
    """Semantic role labelling, one example per predicate (tokens, predicate_index, tags)."""

    tokens_column: str = field(default="tokens", metadata={"help": "Column holding the list of words."})
    predicate_index_column: str = field(
        default="predicate_index", metadata={"help": "Column holding the 0-based index of the predicate word."}
    )
    tags_column: str = field(default="tags", metadata={"help": "Column holding one BIO role tag per word."})
    max_seq_length: int = field(default=256, metadata={"help": "Maximum input length in tokens."})
    predicate_marker: str = field(
        default="<pred>", metadata={"help": "Marker token inserted before the predicate word."}
    )
    predicate_end_marker: str = field(
        default="</pred>", metadata={"help": "Marker token inserted after the predicate word."}
    )
    augment: str = field(
        default="none",
        metadata={
            "help": "Training-data augmentation: 'none' or 'word_dropout' (drop non-argument, "
            "non-predicate words tagged O with probability --augment_prob; spans stay intact).",
            "choices": ["none", "word_dropout"],
        },
    )
    augment_prob: float = field(default=0.1, metadata={"help": "Probability used by --augment."})
    predicate_context: Optional[bool] = field(
        default=None,
        metadata={
            "help": "Join each token's state with the predicate's before the classifier (ForgeConfig."
            "classifier_predicate_context). Default: on for a model the recipe builds from a preset (its measured "
            "default), off for a new head on a pretrained start; a fine-tuned SRL folder keeps its own."
        },
    )


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
_RUN_HELP = {
    "max_train_minutes": "Training budget in minutes of wall-clock training time (evaluations during training are "
    "not counted): training stops at the first step past it, then the final evaluation and save run as usual "
    "(the stated budget of a measured run).",
    "overwrite_output_dir": (
        "Allow writing into an --output_dir that already holds a finished model, and start a fresh run there "
        "instead of resuming its checkpoints. Without it the recipe refuses to replace a model, and resumes "
        "only a checkpoint written with the same run-defining flags, so nothing a user had is silently lost. "
        "(transformers 5 removed its own flag.)"
    ),
    "early_stopping_patience": (
        "Stop when the task metric (--metric_for_best_model) has not improved for this many "
        "evaluations; the best model is kept. Needs --eval_strategy steps|epoch. 0 or unset: off."
    ),
    "early_stopping_threshold": "Minimum improvement of the metric that counts as an improvement.",
    "stop_on_nan": (
        "Stop with a clear message when the loss or a weight becomes NaN/inf, without saving the "
        "broken state (the last good checkpoint stays)."
    ),
}


@dataclass
class ForgeRunArguments:
    """Forge's run-safety, early-stopping and budget switches, added to both TrainingArguments classes below."""

    overwrite_output_dir: bool = field(default=False, metadata={"help": _RUN_HELP["overwrite_output_dir"]})
    early_stopping_patience: Optional[int] = field(
        default=None, metadata={"help": _RUN_HELP["early_stopping_patience"]}
    )
    early_stopping_threshold: float = field(default=0.0, metadata={"help": _RUN_HELP["early_stopping_threshold"]})
    stop_on_nan: bool = field(default=True, metadata={"help": _RUN_HELP["stop_on_nan"]})
    max_train_minutes: Optional[float] = field(
        default=None, metadata={"help": _RUN_HELP["max_train_minutes"]}
    )
    anneal_over_budget: bool = field(
        default=True,
        metadata={"help": "With --max_train_minutes and a linear/cosine --lr_scheduler_type, decay the learning rate "
                  "over the time budget (zero when it ends) instead of over --num_train_epochs/--max_steps, which a "
                  "time-capped run rarely reaches."},
    )
    eval_every_minutes: Optional[float] = field(
        default=None,
        metadata={"help": "Evaluate every N minutes of training time (evaluation time not counted) and append "
                  "each result to <output_dir>/learning_curve.jsonl: the points of a metric-vs-minutes curve."},
    )
    eval_subset_size: Optional[int] = field(
        default=None,
        metadata={"help": "Evaluations during training use only the first N validation examples (cheap curve "
                  "points); the final evaluation still uses the whole validation split."},
    )
    ema_decay: Optional[float] = field(
        default=None,
        metadata={"help": "Keep an exponential moving average of the trained weights (decay D per optimizer step, "
                  "e.g. 0.999; warmed up as min(D, (1+n)/(10+n)) after n steps) and evaluate, save and export it "
                  "instead of the last step's weights; checkpoints keep it beside the weights (ema_weights."
                  "safetensors) so that a resumed run continues it. 0 or unset: off."},
    )


@dataclass
class ForgeTrainingArguments(ForgeRunArguments, DPArguments, TrainingArguments):
    """transformers' TrainingArguments plus :class:`ForgeRunArguments` and the DP-SGD flags (``recipes.privacy.dp``)."""


@dataclass
class ForgeSeq2SeqTrainingArguments(ForgeRunArguments, Seq2SeqTrainingArguments):
    """transformers' Seq2SeqTrainingArguments plus :class:`ForgeRunArguments`."""


@functools.cache
def with_defaults(base: type, defaults: tuple[tuple[str, Any], ...],
                  pretrained: tuple[tuple[str, Any], ...] = ()) -> type:
    """``base`` (an arguments dataclass) with other default values: a task recipe's own defaults.

    The task's :class:`~recipes.core.registry.TaskSpec` lists them (``training_defaults``): the settings that
    reached the best quality per CPU-minute in bench/results/ (a from-scratch transformer wants a far higher
    learning rate than transformers' 5e-5, meant for fine-tuning large pretrained models); ``data_defaults`` do the
    same for the task's data arguments (summarization's generation settings). A flag or a config
    file key still wins; ``--help`` shows each recipe default. A dataclass subclass (as transformers'
    Seq2SeqTrainingArguments is of TrainingArguments) keeps every field, check and JSON export of ``base``.

    ``pretrained`` (``TaskSpec.pretrained_training_defaults``) are the values a run starting from
    ``--model_name_or_path`` uses instead (:func:`apply_pretrained_defaults`); here they only join the help text.
    """
    if not defaults and not pretrained:
        return base
    hints = typing.get_type_hints(base)  # resolved types: HfArgumentParser reads them from the new class
    scratch, from_pretrained = dict(defaults), dict(pretrained)
    new_fields = []
    for name in [*scratch, *(n for n in from_pretrained if n not in scratch)]:
        if name not in base.__dataclass_fields__:
            raise ValueError(f"training default {name!r} is not a field of {base.__name__}.")
        old = base.__dataclass_fields__[name]
        value = scratch.get(name, old.default)
        help_text = (old.metadata.get("help") or "").rstrip()
        notes = [f"this recipe's default: {value}"] if name in scratch else []
        if name in from_pretrained:
            notes.append(f"from --model_name_or_path: {from_pretrained[name]}")
        metadata = {**old.metadata, "help": f"{help_text} ({'; '.join(notes)})".strip()}
        new_fields.append((name, hints[name], field(default=value, metadata=metadata)))
    cls = dataclasses.make_dataclass(base.__name__, new_fields, bases=(base,))
    cls.__module__, cls.__qualname__, cls.__doc__ = base.__module__, base.__qualname__, base.__doc__
    cls._defaults_of = base  # parse_args hands back an instance of ``base`` (see there)
    return cls


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------
def parse_args(*dataclass_types: type, args: Optional[Sequence[str]] = None) -> tuple[Any, ...]:
    """Parse command-line flags (or one JSON/YAML file) into instances of ``dataclass_types``.

    Args:
        dataclass_types: the argument dataclasses, in the order the instances are returned.
        args: the argument list; ``None`` reads ``sys.argv[1:]``. A list holding exactly one path
            ending in .json/.yaml/.yml is read as a config file whose keys are the flag names.

    Raises:
        ValueError: unknown keys in a config file, or a missing config file (argparse itself exits
            with a usage message on unknown command-line flags).
    """
    if not dataclass_types:
        raise ValueError("parse_args needs at least one dataclass type.")
    prepare_launch()  # before the TrainingArguments set up devices: CPU DDP under torchrun, no FSDP on CPU
    argv = list(sys.argv[1:] if args is None else args)
    from .cli import cli_identity

    prog, description = cli_identity()  # `python -m recipes.<name>` and its docstring (example command included)
    parser = build_parser(*dataclass_types, prog=prog, description=description)
    if len(argv) == 1 and argv[0].lower().endswith(CONFIG_FILE_SUFFIXES):
        path = Path(argv[0])
        if not path.is_file():
            raise ValueError(f"Config file {path} does not exist.")
        parsed = parser.parse_dict(_read_config_file(path, dataclass_types))
    else:
        parsed = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    for obj in parsed:
        # a with_defaults class only changes defaults, which parsing has applied: the run carries the plain
        # class, which pickles (the Trainer's training_args.bin) and compares like any other
        base = type(obj).__dict__.get("_defaults_of")
        if base is not None:
            obj.__class__ = base
    return tuple(parsed)


def given_fields(*dataclass_types: type, args: Optional[Sequence[str]] = None) -> frozenset[str]:
    """The fields that ``args`` (the command line, or one config file) sets explicitly, whatever their value.

    A default that depends on the run (:func:`apply_pretrained_defaults`) must not replace a value the user chose,
    even one equal to the plain default; argparse itself answers this when every default is suppressed (so
    abbreviated flags and ``--flag=value`` count too).
    """
    argv = list(sys.argv[1:] if args is None else args)
    if len(argv) == 1 and argv[0].lower().endswith(CONFIG_FILE_SUFFIXES):
        return frozenset(_read_config_file(Path(argv[0]), dataclass_types))
    parser = HfArgumentParser(dataclass_types, argument_default=argparse.SUPPRESS)
    for action in parser._actions:  # HfArgumentParser sets each field's default on its action explicitly
        action.default, action.required = argparse.SUPPRESS, False
    namespace, _ = parser.parse_known_args(argv)
    return frozenset(vars(namespace))


def apply_pretrained_defaults(training_args: Any, defaults: Sequence[tuple[str, Any]], given: frozenset[str]) -> dict:
    """Set the task's defaults for a run that starts from a pretrained model (``--model_name_or_path``).

    A from-scratch transformer wants a high learning rate (the recipes' ``training_defaults``); a pretrained one
    loses what it learned at that rate (``TaskSpec.pretrained_training_defaults``, measured in bench/results/).
    Flags the user gave (``given``, :func:`given_fields`) win. Returns what was changed.
    """
    changed = {}
    for name, value in defaults:
        if name not in given and getattr(training_args, name) != value:
            setattr(training_args, name, value)
            changed[name] = value
    return changed


def build_parser(*dataclass_types: type, prog: Optional[str] = None,
                 description: Optional[str] = None) -> HfArgumentParser:
    """The recipes' parser for ``dataclass_types``: usage line, description, then the flags grouped for ``--help``.

    :func:`parse_args` parses with it; ``recipes/core/fast_help.py`` records its ``--help`` so that a recipe can
    print it without importing transformers.
    """
    from .cli import group_help

    parser = HfArgumentParser(dataclass_types, prog=prog, description=description,
                              usage="%(prog)s [--flag VALUE ...]  or  %(prog)s CONFIG.yaml|CONFIG.json",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    group_help(parser, dataclass_types)
    return parser


def _read_config_file(path: Path, dataclass_types: Sequence[type]) -> dict[str, Any]:
    """The keys of a JSON/YAML config file, with numbers written as strings converted by field type.

    PyYAML follows YAML 1.1, where ``1e-3`` (no dot) is a string; HfArgumentParser.parse_dict passes
    values through unconverted, so without this the run would crash inside the optimizer.
    """
    from .guards import coerce_config_values

    try:
        text = path.read_text(encoding="utf-8")
    except (PermissionError, IsADirectoryError) as err:
        raise ValueError(f"Config file {path} cannot be read ({err.strerror}): check its permissions.") from None
    if path.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"Config file {path} must hold a mapping of flag names to values, got {type(data).__name__}.")
    return coerce_config_values(dataclass_types, data, str(path))
