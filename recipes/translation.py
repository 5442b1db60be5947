r"""Fine-tune Forge for translation (sacreBLEU + chrF on detokenized text, beam search with length penalty).

    python -m recipes.translation --model_name_or_path runs/forge-small-pretrained \
        --train_file ../shared/data/translation/train.jsonl --validation_file ../shared/data/translation/validation.jsonl \
        --source_lang de --target_lang en --do_train --do_eval --output_dir runs/translation \
        --num_train_epochs 5 --learning_rate 3e-4 --label_smoothing_factor 0.1 --num_beams 4 --length_penalty 1.0 \
        --eval_strategy epoch --save_strategy epoch --early_stopping_patience 2

The data holds either a ``translation`` column of ``{"de": ..., "en": ...}`` dicts (Hub style) or one
column per language code (the Multi30k files in ../shared/data).
"""

from __future__ import annotations

if __name__ == "__main__":  # --help before the imports below load torch (recipes/core/fast_help.py)
    from .core.fast_help import exit_with_help_if_asked

    exit_with_help_if_asked(__spec__)

from collections.abc import Iterable, Mapping
from typing import Any, Optional

from .core.args import TranslationDataArguments
from .core.data import ColumnSpec
from .core.driver import run_task
from .core.registry import TaskSpec, pipeline_usage
from .core.seq2seq import Seq2SeqRecipe
from .core.tasks import check_translation_dicts, translation_pairs


def translation_columns(data_args: Any, split: str, columns: Any) -> list[ColumnSpec]:
    """A ``translation`` dict column, or one column per language (the target optional in the test split)."""
    if data_args.translation_column in columns:
        return [ColumnSpec(data_args.translation_column, "translation_column", "dict")]
    return [
        ColumnSpec(data_args.source_lang, "source_lang", "text"),
        ColumnSpec(data_args.target_lang, "target_lang", "text", optional=split == "test"),
    ]


class TranslationRecipe(Seq2SeqRecipe):
    def pairs(self, examples: Mapping[str, list]) -> tuple[list[str], Optional[list[str]]]:
        return translation_pairs(examples, self.data_args)


def translation_targets(ds: Any, data_args: Any) -> Optional[tuple[Iterable[Any], str]]:
    """The target-language sentences (the training-target guard), from a dict column or a language column."""
    columns = ds.column_names or []
    if data_args.translation_column in columns:
        lang = data_args.target_lang
        return ((pair or {}).get(lang) for pair in ds[data_args.translation_column]), "--target_lang"
    if data_args.target_lang in columns:
        return ds[data_args.target_lang], "--target_lang"
    return None


SPEC = TaskSpec(
    name="translation", title="Translation", metric="bleu", recipe=TranslationRecipe,
    auto_class="AutoModelForSeq2SeqLM", pipeline_task="translation", data_args_class=TranslationDataArguments,
    column_specs=translation_columns, check_rows=check_translation_dicts,
    training_targets=translation_targets, warn_empty_targets=True,
    usage=pipeline_usage(
        'translator = pipeline("translation", model=model_id, trust_remote_code=True)\n'
        'print(translator(["The weather is nice today.", "Where is the station?"], max_new_tokens=40))'
    ),
    sample_input="The weather is nice today.",
    # what the CPU measurements used (bench/results/sweep_translation.jsonl, quality_cpu.jsonl): a from-scratch
    # transformer learns at 1e-3, not at transformers' 5e-5; batches of similar length waste less on padding
    training_defaults=(("learning_rate", 1e-3), ("warmup_steps", 200), ("weight_decay", 0.01),
                       ("label_smoothing_factor", 0.1), ("per_device_train_batch_size", 64),
                       ("train_sampling_strategy", "group_by_length")),
    # a pretrained start fine-tunes at 5e-4: from the post-norm pretraining with the task's 8k vocabulary, 1e-3 ended
    # at 3.1 sacreBLEU, 5e-4 at 37.7 and 3e-4 at 35.4 (bench/results/explore/translation_pretrained_task_tokenizer*.jsonl)
    pretrained_training_defaults=(("learning_rate", 5e-4),),
    # post-norm, as BART: 39.3 sacreBLEU from scratch in 30 CPU-minutes against 37.0 pre-norm
    # (bench/results/quality_cpu_post_norm.jsonl, quality_cpu.jsonl); SST-2 stalls with it, so it is per task
    preset_config_defaults=(("norm_position", "post"),),
    main_job_order=2,
    main_job_flags=("--source_lang", "de", "--target_lang", "en", "--predict_with_generate",
                    "--max_source_length", "64", "--max_target_length", "64"),
    demo_call=lambda row: ((row["de"],), {"max_new_tokens": 40}),
)


def main(argv: Optional[list[str]] = None, callbacks: Optional[list[Any]] = None) -> dict[str, float]:
    """Run the recipe; ``argv`` as on the command line (or one JSON/YAML path). Returns the eval metrics."""
    return run_task(SPEC, argv, callbacks)


if __name__ == "__main__":
    from .core.cli import run_cli

    run_cli(main)
