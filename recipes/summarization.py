r"""Fine-tune Forge for abstractive summarization (ROUGE-1/2/L/Lsum, mean generated length).

    python -m recipes.summarization --model_name_or_path runs/forge-small-pretrained \
        --train_file ../shared/data/summarization/train.jsonl --validation_file ../shared/data/summarization/validation.jsonl \
        --text_column document --summary_column summary --max_source_length 512 --max_target_length 64 \
        --do_train --do_eval --output_dir runs/summarization --num_train_epochs 3 --learning_rate 3e-4 \
        --num_beams 4 --length_penalty 1.0 --no_repeat_ngram_size 3 \
        --eval_strategy epoch --save_strategy epoch --early_stopping_patience 2
"""

from __future__ import annotations

if __name__ == "__main__":  # --help before the imports below load torch (recipes/core/fast_help.py)
    from .core.fast_help import exit_with_help_if_asked

    exit_with_help_if_asked(__spec__)

from collections.abc import Iterable, Mapping
from typing import Any, Optional

from .core.args import SummarizationDataArguments
from .core.driver import run_task
from .core.registry import DataColumn, TaskSpec, pipeline_usage
from .core.seq2seq import Seq2SeqRecipe


def document_summary_pairs(examples: Mapping[str, list], data_args: Any) -> tuple[list[str], Optional[list[str]]]:
    """(documents, summaries) of a batch; summaries are None when the split has none (prediction only)."""
    summaries = examples.get(data_args.summary_column)
    return list(examples[data_args.text_column]), (list(summaries) if summaries is not None else None)


class SummarizationRecipe(Seq2SeqRecipe):
    def pairs(self, examples: Mapping[str, list]) -> tuple[list[str], Optional[list[str]]]:
        return document_summary_pairs(examples, self.data_args)

    def extra_columns(self) -> list[str]:
        return [self.data_args.id_column] if self.data_args.id_column else []


def summary_targets(ds: Any, data_args: Any) -> Optional[tuple[Iterable[Any], str]]:
    """The reference summaries (the training-target guard)."""
    if data_args.summary_column not in (ds.column_names or []):
        return None
    return ds[data_args.summary_column], "--summary_column"


SPEC = TaskSpec(
    name="summarization", title="Summarization", pipeline_task="summarization", auto_class="AutoModelForSeq2SeqLM",
    data_args_class=SummarizationDataArguments, recipe=SummarizationRecipe, metric="rougeL",
    training_targets=summary_targets, warn_empty_targets=True,
    data_columns=(DataColumn("text_column", "text"), DataColumn("summary_column", "text", True)),
    usage=pipeline_usage(
        'summarizer = pipeline("summarization", model=model_id, trust_remote_code=True)\n'
        'text = "The city council met on Tuesday to discuss the new budget. After a long debate, the members '
        'agreed to spend more on public transport and less on road building."\n'
        "print(summarizer(text, max_new_tokens=40, num_beams=2))"
    ),
    sample_input="The council met on Tuesday. After a long debate it agreed to spend more on buses.",
    demo_call=lambda row: ((row["document"],), {"max_new_tokens": 40}),
    # translation's measured from-scratch settings (bench/results/sweep_translation.jsonl), the nearest task:
    # a small seq2seq transformer from scratch learns at 1e-3 with label smoothing; the DialogSum row of the
    # quality table (bench/results/quality_cpu.jsonl) is the measurement of them on this task
    training_defaults=(("learning_rate", 1e-3), ("warmup_steps", 200), ("weight_decay", 0.01),
                       ("label_smoothing_factor", 0.1), ("per_device_train_batch_size", 32),
                       ("train_sampling_strategy", "group_by_length")),
    # a pointer-generator output layer and post-norm layers: DialogSum ROUGE-L 24.4 against 18.7 without the copy head
    # (both from scratch with an 8k DialogSum tokenizer, 30 CPU-minutes; bench/results/explore/README.md, session 15)
    preset_config_defaults=(("norm_position", "post"), ("copy_attention", True)),
    # beam search settings, measured by re-evaluating two such models (seeds 42, 43; no training) on the 500
    # validation dialogues: ROUGE-L 24.39 / 26.32 as trained (length_penalty 1, no n-gram block) -> 25.17 / 26.65.
    # length_penalty 2 lengthens summaries (9.9 words against the references' 20.9); blocking repeated 6-grams stops
    # the speaker-tag loops ("#Person2# #Person2# #Person2#") that longer beams bring. The block counts subword
    # tokens ("#Person2#" is 4): 4-grams scored the same (25.57 / 26.45) but allow a tag mid-sentence once and any
    # 4-piece word once, 3-grams a tag once (24.05); bench/results/explore/dialogsum_beam_settings.md, session 17
    data_defaults=(("length_penalty", 2.0), ("no_repeat_ngram_size", 6)),
    # the main job fine-tunes its pretrained folder, which the preset default above does not reach
    main_job_order=3,
    main_job_flags=("--predict_with_generate", "--max_source_length", "256", "--max_target_length", "48",
                    "--copy_attention", "true"),
)


def main(argv: Optional[list[str]] = None, callbacks: Optional[list[Any]] = None) -> dict[str, float]:
    """Run the recipe; ``argv`` as on the command line (or one JSON/YAML path). Returns the eval metrics."""
    return run_task(SPEC, argv, callbacks)


if __name__ == "__main__":
    from .core.cli import run_cli

    run_cli(main)
