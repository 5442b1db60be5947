"""Fine-tune Forge for natural-language inference: does the premise entail, contradict or say nothing about
the hypothesis? Sequence classification over a text pair (``premise </s> hypothesis </s>``).

    python -m recipes.nli --model_name_or_path runs/forge-small-pretrained \
        --train_file ../shared/data/nli/train.jsonl --validation_file ../shared/data/nli/validation.jsonl \
        --do_train --do_eval --output_dir runs/nli --num_train_epochs 3 --learning_rate 1e-4 \
        --eval_strategy epoch --save_strategy epoch --early_stopping_patience 2

Labels are ``entailment`` / ``neutral`` / ``contradiction`` (or MNLI's integers 0 / 1 / 2, which get those
names). Because the saved config maps an "entailment" label, transformers' own ``zero-shot-classification``
pipeline runs on the folder: each candidate label becomes a hypothesis ("This example is {label}.") and is
scored by its entailment logit.
"""

from __future__ import annotations

if __name__ == "__main__":  # --help before the imports below load torch (recipes/core/fast_help.py)
    from .core.fast_help import exit_with_help_if_asked

    exit_with_help_if_asked(__spec__)

import logging
from dataclasses import dataclass, field
from typing import Any, Optional

from .core.args import SentimentDataArguments
from .core.classification import CLASSIFICATION_COLUMNS, ClassificationRecipe
from .core.data import build_label_list
from .core.driver import run_task
from .core.registry import TaskSpec, pipeline_usage

logger = logging.getLogger(__name__)

TASK = "zero-shot-classification"
MNLI_LABELS = ("entailment", "neutral", "contradiction")  # MNLI's order for its integer labels 0, 1, 2


@dataclass
class NLIDataArguments(SentimentDataArguments):
    """Premise / hypothesis pairs with an entailment / neutral / contradiction label."""

    text_column: str = field(default="premise", metadata={"help": "Column holding the premise."})
    text_pair_column: Optional[str] = field(default="hypothesis", metadata={"help": "Column holding the hypothesis."})
    label_column: str = field(
        default="label", metadata={"help": "Column holding the label: entailment / neutral / contradiction, or 0 / 1 / 2."}
    )
    max_seq_length: int = field(default=128, metadata={"help": "Maximum length of premise + hypothesis in tokens."})


class NLIRecipe(ClassificationRecipe):
    """Pair classification whose label set must name "entailment", so zero-shot classification works."""

    def prepare(self) -> dict[str, Any]:
        data_args = self.data_args
        if "train" in self.raw and not data_args.class_names:
            if build_label_list(self.raw["train"], data_args.label_column) == [0, 1, 2]:
                data_args.class_names = ",".join(MNLI_LABELS)
        overrides = super().prepare()
        if not any(str(name).lower().startswith("entail") for name in self.id2label.values()):
            logger.warning(
                "No label named 'entailment' among %s: the folder will classify pairs, but transformers' "
                "zero-shot-classification pipeline needs an entailment label (--class_names names the labels).",
                sorted(self.id2label.values()),
            )
        return overrides

    def prediction_row(self, example: dict, prediction: str) -> dict:
        data_args = self.data_args
        return {"premise": example[data_args.text_column], "hypothesis": example[data_args.text_pair_column],
                "prediction": prediction}


SPEC = TaskSpec(
    name="nli", aliases=("natural-language-inference", TASK), title="Natural language inference",
    pipeline_task=TASK, auto_class="AutoModelForSequenceClassification", recipe=NLIRecipe,
    data_args_class=NLIDataArguments, data_columns=CLASSIFICATION_COLUMNS, metric="accuracy",
    usage=pipeline_usage(
        'classifier = pipeline("zero-shot-classification", model=model_id, trust_remote_code=True)\n'
        'print(classifier("The council agreed to spend more on buses and trains.",\n'
        '                 candidate_labels=["transport", "sport", "cooking"]))\n'
        "# One premise / hypothesis pair, scored directly:\n"
        'nli = pipeline("text-classification", model=model_id, trust_remote_code=True)\n'
        'print(nli({"text": "A man is jogging in the park.", "text_pair": "A man is outside."}, top_k=None))'
    ),
    sample_input={"sequences": "The council agreed to spend more on buses and trains.",
                  "candidate_labels": ["transport", "sport"]},
    # the demo asks whether the first validation premise entails its own hypothesis rather than an unrelated one
    demo_call=lambda row: ((row["premise"],), {"candidate_labels": [row["hypothesis"], "something else entirely"],
                                               "hypothesis_template": "{}"}),
    main_job_order=6,
)


def main(argv: Optional[list[str]] = None, callbacks: Optional[list[Any]] = None) -> dict[str, float]:
    """Run the recipe; ``argv`` as on the command line (or one JSON/YAML path). Returns the eval metrics."""
    return run_task(SPEC, argv, callbacks)


if __name__ == "__main__":
    main()
