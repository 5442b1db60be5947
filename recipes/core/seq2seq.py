"""The text-to-text steps shared by translation and summarization.

The two recipes differ only in where source and target come from, which metric they report and what
the predictions file holds; a :class:`Seq2SeqRecipe` subclass gives those (``pairs``, ``extra_columns``)
and the generic driver does the rest (Seq2SeqTrainer, predict_with_generate, beam search with length
penalty, label smoothing via ``DataCollatorForSeq2Seq(tokenizer, model=model)`` so decoder inputs come
from the collator).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Optional

from transformers import DataCollatorForSeq2Seq

from .args import ForgeSeq2SeqTrainingArguments
from .driver import TaskRecipe, run_task
from .metrics import decode_generated, seq2seq_metrics
from .trainers import ForgeSeq2SeqTrainer  # evaluation in dataset order, also under group_by_length
from .tasks import tokenize_seq2seq

logger = logging.getLogger(__name__)

__all__ = ["Seq2SeqRecipe", "configure_generation", "run_seq2seq"]

run_seq2seq = run_task  # the old name of the driver's entry point


def configure_generation(model: Any, data_args: Any, training_args: Any) -> None:
    """Evaluation-time generation settings: beams, length penalty, length limits, repeated n-grams.

    ``--val_max_target_length`` / ``--num_beams`` override the Trainer's ``--generation_*`` flags.
    """
    training_args.predict_with_generate = True
    max_length = data_args.val_max_target_length or training_args.generation_max_length or data_args.max_target_length
    num_beams = data_args.num_beams or training_args.generation_num_beams or 1
    training_args.generation_max_length = max_length
    training_args.generation_num_beams = num_beams
    config = model.generation_config
    config.max_length = max_length
    config.num_beams = num_beams
    # only beam search reads it, and transformers refuses to save a config that sets it for greedy decoding
    config.length_penalty = data_args.length_penalty if num_beams > 1 else 1.0
    config.no_repeat_ngram_size = data_args.no_repeat_ngram_size
    config.min_length = getattr(data_args, "min_target_length", 0) or 0
    config.early_stopping = num_beams > 1
    config.decoder_start_token_id = model.config.decoder_start_token_id
    config.eos_token_id = model.config.eos_token_id
    config.pad_token_id = model.config.pad_token_id


class Seq2SeqRecipe(TaskRecipe):
    """Source text in, generated target out; the metric kind (BLEU or ROUGE) follows the spec's name."""

    trainer_class = ForgeSeq2SeqTrainer
    training_args_class = ForgeSeq2SeqTrainingArguments
    length_flag = "max_source_length"

    def pairs(self, examples: Mapping[str, list]) -> tuple[list[str], Optional[list[str]]]:
        """(sources, targets) of a batch; targets are None when the split has none (prediction only)."""
        raise NotImplementedError

    def extra_columns(self) -> list[str]:
        """Raw columns copied into the predictions file in front of source and prediction."""
        return []

    def prepare(self) -> dict[str, Any]:
        data_args = self.data_args  # predictions need no references: missing ones are not scored
        target = getattr(data_args, "summary_column", None) or getattr(data_args, "target_lang")
        flag = "summary_column" if hasattr(data_args, "summary_column") else "target_lang"
        self.drop_unusable_labels(target, lambda v: isinstance(v, str), flag)
        return self.forge_head_option("copy_attention", "copy_attention")

    def setup_model(self, model: Any, tokenizer: Any) -> None:
        configure_generation(model, self.data_args, self.training_args)

    def encode_function(self, tokenizer: Any) -> tuple[Any, dict[str, Any]]:
        data_args = self.data_args

        def encode(examples: Mapping[str, list]) -> dict[str, list]:
            sources, targets = self.pairs(examples)
            return tokenize_seq2seq(
                examples, tokenizer, sources=sources, targets=targets, max_source_length=data_args.max_source_length,
                max_target_length=data_args.max_target_length, prefix=data_args.source_prefix or "",
            )

        return encode, {}

    def collator(self, tokenizer: Any, model: Any) -> Any:
        # model= gives decoder_input_ids from the labels, which label smoothing needs (it pops labels)
        return DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)

    def compute_metrics(self, tokenizer: Any) -> Any:
        return seq2seq_metrics(tokenizer, self.spec.name)

    def read_predictions(self, split: str, prefix: str, result: Any) -> tuple[Optional[dict], list[dict]]:
        raw = self.raw[split]
        generated = decode_generated(self.tokenizer, result.predictions)
        sources, targets = self.pairs(raw[:])
        extra = {col: raw[col] for col in self.extra_columns() if col in raw.column_names}
        rows = []
        for i, (source, prediction) in enumerate(zip(sources, generated)):
            row = {**{col: values[i] for col, values in extra.items()}, "source": source, "prediction": prediction}
            if targets is not None:
                row["reference"] = targets[i]
            rows.append(row)
        scores = result.metrics if result.metrics and "labels" in self.features[split].column_names else None
        return scores, rows
