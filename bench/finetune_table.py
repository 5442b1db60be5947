"""README's fine-tuning table from bench/measured_finetune.sh's results file (one JSON object per run).

    python bench/finetune_table.py bench/results/finetune_cpu_15min.jsonl

Prints one markdown row per task: pretrained vs from-scratch validation scores, how much training data each run
saw in its budget, and a published figure for a small model with its source. The published figures are quoted
from their sources (none was re-measured here) and are on other splits, tokenisation or corpora where stated.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# task -> (row label, [(metric key, shown name)], published small-model figure with its source)
TASKS: dict[str, tuple[str, list[tuple[str, str]], str]] = {
    "sentiment": (
        "SST-2 sentiment (872)",
        [("eval_accuracy", "accuracy"), ("eval_macro_f1", "macro-F1")],
        "BERT-Mini (4 layers, d 256, ~11M, BERT-pretrained): accuracy 85.9 on the GLUE test set "
        "(Turc et al. 2019, arXiv:1908.08962; google/bert_uncased_L-4_H-256_A-4 model card)",
    ),
    "translation": (
        "Multi30k de->en (1,014)",
        [("eval_bleu", "sacreBLEU"), ("eval_chrf", "chrF")],
        "Transformer 3+3 layers, d 256, 9M, from scratch, 10 epochs: BLEU 36.5 on test2016, greedy, torchtext "
        "BLEU on lowercased spaCy tokens, not sacreBLEU (B. Trevett, pytorch-seq2seq tutorial 6)",
    ),
    "summarization": (
        "DialogSum (500)",
        [("eval_rouge1", "ROUGE-1"), ("eval_rouge2", "ROUGE-2"), ("eval_rougeL", "ROUGE-L")],
        "no small-model figure found; BART-large (406M, pretrained): ROUGE-1/2/L 45.95 / 21.36 / 38.72 on the "
        "test set against the first reference (dataset authors' baseline, github.com/cylnlp/dialogsum)",
    ),
    "qa": (
        "SQuAD v1.1 (3,423, our validation)",
        [("eval_exact_match", "EM"), ("eval_f1", "F1")],
        "BiDAF single model (GloVe vectors, no pretraining): EM 67.7 / F1 77.3 on the official dev set "
        "(Seo et al., ICLR 2017)",
    ),
    "srl": (
        "English EWT SRL (692 predicates)",
        [("eval_f1", "span F1, V excluded")],
        "no Universal PropBank figure found; deep BiLSTM (He et al., ACL 2017): F1 83.2 on CoNLL-2005 WSJ test "
        "(5-model ensemble, a different PropBank corpus)",
    ),
}


def load_runs(path: Path) -> dict[str, dict]:
    """run name -> its last record (a rerun of the same name replaces the earlier one)."""
    runs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            runs[row["run"]] = row
    return runs


def seen(row: dict) -> str:
    """Training examples (QA: windows) seen in the budget, as '~N of M' with the epoch fraction."""
    if "epoch" not in row or "train_samples" not in row:
        return "-"
    total = row["train_samples"]
    return f"~{row['epoch'] * total / 1000:.1f}k of {total / 1000:.1f}k ({row['epoch']:.2f} ep.)"


def table(runs: dict[str, dict]) -> str:
    lines = [
        "| task (validation split) | metric | pretrained | scratch | seen: pretrained / scratch | published small model, for scale |",
        "|---|---|---:|---:|---|---|",
    ]
    for task, (label, metrics, published) in TASKS.items():
        cells = []
        for init in ("pre", "scr"):
            row = runs.get(f"{task}-{init}")
            if row is None or row.get("rc") != 0:
                cells.append("failed" if row else "not run")
            else:
                cells.append(" / ".join(f"{row[key]:.1f}" for key, _ in metrics))
        names = " / ".join(name for _, name in metrics)
        seen_cells = " / ".join(seen(runs.get(f"{task}-{init}", {})) for init in ("pre", "scr"))
        lines.append(f"| {label} | {names} | {cells[0]} | {cells[1]} | {seen_cells} | {published} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="measured.jsonl written by bench/measured_finetune.sh")
    args = parser.parse_args(argv)
    text = table(load_runs(args.results))
    print(text)
    return text


if __name__ == "__main__":
    main()
