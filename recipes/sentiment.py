r"""Fine-tune Forge for sentiment / text classification (binary or multi-class).

    python -m recipes.sentiment --model_name_or_path runs/forge-small-pretrained \
        --train_file ../shared/data/sentiment/train.jsonl --validation_file ../shared/data/sentiment/validation.jsonl \
        --do_train --do_eval --output_dir runs/sentiment --num_train_epochs 3 --learning_rate 1e-4 \
        --eval_strategy epoch --save_strategy epoch --early_stopping_patience 2

The label set (and ``id2label``) comes from the training data; accuracy and macro-F1 are reported. The
steps are the shared classification ones (``recipes/core/classification.py``); this file is the task's
registry entry.
"""

from __future__ import annotations

if __name__ == "__main__":  # --help before the imports below load torch (recipes/core/fast_help.py)
    from .core.fast_help import exit_with_help_if_asked

    exit_with_help_if_asked(__spec__)

import json
from pathlib import Path
from typing import Any, Optional

from .core.args import SentimentDataArguments
from .core.classification import CLASSIFICATION_COLUMNS, ClassificationRecipe
from .core.driver import run_task
from .core.registry import TaskSpec, pipeline_usage

TASK = "text-classification"


def _named_binary_labels(train: Path) -> list[str]:
    """SST-2 and the embedded sample label 0 = negative, 1 = positive: name them, so pipeline() says "positive"."""
    labels = set()
    with open(train, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                labels.add(json.loads(line).get("label"))
    return ["--class_names", "negative,positive"] if labels == {0, 1} else []


SPEC = TaskSpec(
    name="sentiment", aliases=(TASK, "sentiment-analysis"), title="Text classification",
    auto_class="AutoModelForSequenceClassification", pipeline_task=TASK, metric="accuracy",
    data_args_class=SentimentDataArguments, data_columns=CLASSIFICATION_COLUMNS, recipe=ClassificationRecipe,
    usage=pipeline_usage(
        'classifier = pipeline("text-classification", model=model_id, trust_remote_code=True)\n'
        'print(classifier(["What a wonderful film!", "A dull, lifeless story."]))'
    ),
    sample_input="What a wonderful film!",
    # measured on CPU (bench/results/explore/sentiment_lr5e-4_bs32.jsonl, README "SST-2"): forge-small from
    # scratch, 10 minutes on 2 cores, reached 80.4 and 81.1 (two seeds) at lr 5e-4 / batch 32 / warm-up 50 against
    # 79.6 and 78.6 at lr 1e-3 / batch 64 / warm-up 200 (transformers' 5e-5 barely moves a model from scratch);
    # batches of similar length waste less on padding
    # an average of the weights (--ema_decay) is what is scored and saved: from scratch a single step's weights move
    # SST-2 accuracy by 1-2 points from one minute to the next (bench/results/explore/README.md, session 20)
    training_defaults=(("learning_rate", 5e-4), ("warmup_steps", 50), ("weight_decay", 0.01),
                       ("per_device_train_batch_size", 32), ("train_sampling_strategy", "group_by_length"),
                       ("ema_decay", 0.999)),
    # a bidirectional LSTM in place of self-attention in each encoder layer (the SRL recipe's choice): 67k short
    # phrases are few for attention to learn word order from (sessions 18-20)
    preset_config_defaults=(("encoder_mixer", "recurrent"), ("recurrent_cell", "lstm")),
    main_job_order=1, main_job_data_flags=_named_binary_labels, demo_call=lambda row: ((row["text"],), {}),
)


def main(argv: Optional[list[str]] = None, callbacks: Optional[list[Any]] = None) -> dict[str, float]:
    """Run the recipe; ``argv`` as on the command line (or one JSON/YAML path). Returns the eval metrics."""
    return run_task(SPEC, argv, callbacks)


if __name__ == "__main__":
    from .core.cli import run_cli

    run_cli(main)
