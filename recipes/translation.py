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

from typing import Any, Optional

from recipes.core.args import TranslationDataArguments
from recipes.core.seq2seq import Seq2SeqTask, run_seq2seq
from recipes.core.tasks import translation_pairs

TASK = Seq2SeqTask(
    name="translation", data_args_class=TranslationDataArguments, pairs=translation_pairs, best_metric="bleu"
)


def main(argv: Optional[list[str]] = None, callbacks: Optional[list[Any]] = None) -> dict[str, float]:
    """Run the recipe; ``argv`` as on the command line (or one JSON/YAML path). Returns the eval metrics."""
    return run_seq2seq(TASK, argv, callbacks)


if __name__ == "__main__":
    from recipes.core.cli import run_cli

    run_cli(main)
