r"""Fine-tune Forge for extractive question answering (SQuAD format; EM/F1; v2-style no-answer support).

    python -m recipes.qa --model_name_or_path runs/forge-small-pretrained \
        --train_file ../shared/data/qa/train.jsonl --validation_file ../shared/data/qa/validation.jsonl \
        --max_seq_length 384 --doc_stride 128 --do_train --do_eval --output_dir runs/qa \
        --num_train_epochs 2 --learning_rate 1e-4 --eval_strategy epoch --save_strategy epoch --early_stopping_patience 2

Long contexts become overlapping windows (``--doc_stride``); answers are picked by n-best span
post-processing (``--n_best_size``, ``--max_answer_length``) and, when some questions have no answer
(or ``--version_2_with_negative``), the null score threshold (``--null_score_diff_threshold``). See
``recipes/core/qa_utils.py`` for the no-CLS convention (position 0 is "no answer").
"""

from __future__ import annotations

if __name__ == "__main__":  # --help before the imports below load torch (recipes/core/fast_help.py)
    from .core.fast_help import exit_with_help_if_asked

    exit_with_help_if_asked(__spec__)

from collections.abc import Iterable
from typing import Any, Optional

import numpy as np

from .core.args import QADataArguments
from .core.data import DataValidationError, check_not_empty, first_problem_rows
from .core.driver import TaskRecipe, run_task
from .core.metrics import squad_score
from .core.qa_utils import check_answer_offsets, postprocess_qa_predictions, prepare_qa_features
from .core.registry import DataColumn, TaskSpec, pipeline_usage

TASK = "question-answering"
POSTPROCESS_COLUMNS = ["example_id", "offset_mapping"]


def lower_half_recurrent(fields: dict[str, Any]) -> list[str]:
    """QA's encoder from scratch: ``recurrent`` mixers in the lower half of the layers, attention above."""
    layers = fields["encoder_layers"]
    return ["recurrent"] * (layers // 2) + ["attention"] * (layers - layers // 2)


def check_qa_rows(raw: Any, split: str, data_args: Any) -> None:
    """Every answer text sits at its ``answer_start`` in the context."""
    if data_args.answer_column not in raw[split].column_names:
        return
    problems = first_problem_rows(
        raw, split, lambda ex: check_answer_offsets(ex, data_args.context_column, data_args.answer_column)
    )
    if problems:
        raise DataValidationError(
            f"Answers that do not match their context in the {split} split (--answer_column "
            f"'{data_args.answer_column}'):\n  " + "\n  ".join(problems)
            + "\nanswer_start must be the character offset of the answer text in the context."
        )


class QARecipe(TaskRecipe):
    """Stride windows in, n-best span post-processing out; SQuAD EM/F1 computed on whole examples."""

    encode_desc = "windowing"

    def training_eval_dataset(self, validation: Any) -> Any:
        # EM/F1 during training read every validation window with its example, so --eval_subset_size is not
        # applied here: evaluations during training score the whole split.
        return validation

    def prepare(self) -> dict[str, Any]:
        self.drop_unusable_labels(self.data_args.answer_column, lambda v: isinstance(v, dict), "answer_column")
        self.version_2 = self.data_args.version_2_with_negative
        if self.version_2 is None:  # detect unanswerable questions in the data
            self.version_2 = any(
                not answers["text"]
                for ds in self.raw.values() if self.data_args.answer_column in ds.column_names
                for answers in ds[self.data_args.answer_column]
            )
        # unset: the preset default below for a model from scratch; a folder keeps its own setting
        return self.forge_head_option("lexical_match", "qa_lexical_match")

    def encode_function(self, tokenizer: Any) -> tuple[Any, dict[str, Any]]:
        data_args = self.data_args
        return prepare_qa_features, {"fn_kwargs": dict(
            tokenizer=tokenizer, max_seq_length=data_args.max_seq_length, doc_stride=data_args.doc_stride,
            max_question_length=data_args.max_question_length, question_column=data_args.question_column,
            context_column=data_args.context_column, answer_column=data_args.answer_column,
            id_column=data_args.id_column, overlong_policy=data_args.overlong_policy,
        )}

    def after_encode(self, split: str, mapped: Any) -> Any:
        check_not_empty(mapped, split, "after windowing", "Every example was dropped; see the warnings above.")
        return mapped

    def model_inputs(self, split: str) -> Any:
        return self.features[split].remove_columns(POSTPROCESS_COLUMNS)

    def num_train_examples(self) -> int:
        return len(self.raw["train"])

    def answers_for(self, split: str, start_logits: np.ndarray, end_logits: np.ndarray) -> tuple[dict, dict]:
        n = len(self.features[split])  # distributed evaluation may pad with repeated rows: cut them
        data_args = self.data_args
        return postprocess_qa_predictions(
            self.raw[split], list(self.features[split].select_columns(POSTPROCESS_COLUMNS)), start_logits[:n],
            end_logits[:n], n_best_size=data_args.n_best_size, max_answer_length=data_args.max_answer_length,
            version_2_with_negative=self.version_2, null_score_diff_threshold=data_args.null_score_diff_threshold,
            context_column=data_args.context_column, id_column=data_args.id_column,
        )

    def references(self, split: str) -> list[dict]:
        ids, answers = self.raw[split][self.data_args.id_column], self.raw[split][self.data_args.answer_column]
        return [{"id": i, "answers": a} for i, a in zip(ids, answers)]

    def compute_metrics(self, tokenizer: Any) -> Any:
        if "validation" not in self.raw:
            return None

        def compute(eval_pred: Any) -> dict[str, float]:
            start_logits, end_logits = eval_pred.predictions[:2]
            answers, _ = self.answers_for("validation", start_logits, end_logits)
            return squad_score(answers, self.references("validation"))

        return compute

    def before_predict(self, trainer: Any) -> None:
        trainer.compute_metrics = None  # predictions are scored in read_predictions, per split

    def read_predictions(self, split: str, prefix: str, result: Any) -> tuple[Optional[dict], list[dict]]:
        data_args = self.data_args
        answers, nbest = self.answers_for(split, result.predictions[0], result.predictions[1])
        has_gold = data_args.answer_column in self.raw[split].column_names
        scores = None
        if has_gold:
            scores = {f"{prefix}_{k}": v for k, v in squad_score(answers, self.references(split)).items()}
            scores.update({k: v for k, v in result.metrics.items() if k.endswith("_loss")})
        rows = []
        for example in self.raw[split]:
            qid = example[data_args.id_column]
            row = {"id": qid, "question": example[data_args.question_column], "prediction": answers[qid],
                   "nbest": [{k: c[k] for k in ("text", "score", "start")} for c in nbest[qid][:5]]}
            if has_gold:
                row["answers"] = example[data_args.answer_column]["text"]
            rows.append(row)
        return scores, rows


def answer_targets(ds: Any, data_args: Any) -> Optional[tuple[Iterable[Any], str]]:
    """Whether each question has an answer (the training-target guard: a split with none teaches nothing)."""
    if data_args.answer_column not in (ds.column_names or []):
        return None
    return (None if not (a or {}).get("text") else "answer" for a in ds[data_args.answer_column]), "--answer_column"


SPEC = TaskSpec(
    name="qa", aliases=(TASK,), title="Extractive question answering", pipeline_task=TASK,
    auto_class="AutoModelForQuestionAnswering", metric="f1", recipe=QARecipe, data_args_class=QADataArguments,
    data_columns=(DataColumn("id_column", "text"), DataColumn("question_column", "text"),
                  DataColumn("context_column", "text"), DataColumn("answer_column", "squad_answers", True)),
    check_rows=check_qa_rows,
    training_targets=answer_targets,
    usage=pipeline_usage(
        'qa = pipeline("question-answering", model=model_id, trust_remote_code=True)\n'
        'context = "Forge was trained on a single machine. Its tokenizer is a byte-level BPE with 16384 entries."\n'
        'print(qa(question="How large is the tokenizer?", context=context, top_k=2))'
    ),
    sample_input={"question": "Where did the council meet?", "context": "The council met in the town hall."},
    demo_call=lambda row: ((), {"question": row["question"], "context": row["context"]}),
    # the encoder tasks' measured from-scratch settings (recipes/sentiment.py, recipes/srl.py); the SQuAD row of the
    # quality table (bench/results/quality_cpu.jsonl) is the measurement of them on this task
    training_defaults=(("learning_rate", 1e-3), ("warmup_steps", 200), ("weight_decay", 0.01),
                       ("per_device_train_batch_size", 32), ("train_sampling_strategy", "group_by_length")),
    # the tokens the question and the context share, marked (DrQA's exact-match feature): SQuAD F1 15.9 against 9.7
    # from scratch in 15 minutes (bench/results/explore/README.md, session 14); a bidirectional LSTM instead of
    # self-attention in the lower half of the encoder layers (word order and locality from the recurrence, the
    # question-context alignment from the attention above): F1 31.0 against 20.8 in 15 minutes (session 19)
    preset_config_defaults=(("qa_lexical_match", True), ("encoder_mixer", lower_half_recurrent),
                            ("recurrent_cell", "lstm")),
    # the main job fine-tunes its pretrained folder, which the preset default above does not reach
    main_job_order=4, main_job_flags=("--max_seq_length", "192", "--doc_stride", "64", "--lexical_match", "true"),
)


def main(argv: Optional[list[str]] = None, callbacks: Optional[list[Any]] = None) -> dict[str, float]:
    """Run the recipe; ``argv`` as on the command line (or one JSON/YAML path). Returns the eval metrics."""
    return run_task(SPEC, argv, callbacks)


if __name__ == "__main__":
    from .core.cli import run_cli

    run_cli(main)
