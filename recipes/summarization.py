r"""Fine-tune Forge for abstractive summarization (ROUGE-1/2/L/Lsum, mean generated length).

    python -m recipes.summarization --model_name_or_path runs/forge-small-pretrained \
        --train_file ../shared/data/summarization/train.jsonl --validation_file ../shared/data/summarization/validation.jsonl \
        --text_column document --summary_column summary --max_source_length 512 --max_target_length 64 \
        --do_train --do_eval --output_dir runs/summarization --num_train_epochs 3 --learning_rate 3e-4 \
        --num_beams 4 --length_penalty 1.0 --no_repeat_ngram_size 3 \
        --eval_strategy epoch --save_strategy epoch --early_stopping_patience 2
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from recipes.core.args import SummarizationDataArguments
from recipes.core.seq2seq import Seq2SeqTask, run_seq2seq


def document_summary_pairs(examples: Mapping[str, list], data_args: Any) -> tuple[list[str], Optional[list[str]]]:
    """(documents, summaries) of a batch; summaries are None when the split has none (prediction only)."""
    summaries = examples.get(data_args.summary_column)
    return list(examples[data_args.text_column]), (list(summaries) if summaries is not None else None)


TASK = Seq2SeqTask(
    name="summarization",
    data_args_class=SummarizationDataArguments,
    pairs=document_summary_pairs,
    best_metric="rougeL",
    extra_columns=lambda data_args: [data_args.id_column] if data_args.id_column else [],
)


def main(argv: Optional[list[str]] = None, callbacks: Optional[list[Any]] = None) -> dict[str, float]:
    """Run the recipe; ``argv`` as on the command line (or one JSON/YAML path). Returns the eval metrics."""
    return run_seq2seq(TASK, argv, callbacks)


if __name__ == "__main__":
    from recipes.core.cli import run_cli

    run_cli(main)
