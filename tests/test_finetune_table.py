"""bench/finetune_table.py: README's fine-tuning table is built from the results file, not typed by hand."""

import importlib.util
import json
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("finetune_table", REPO_ROOT / "bench" / "finetune_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rows_show_each_run_and_a_rerun_replaces_the_earlier_record(tmp_path):
    results = tmp_path / "measured.jsonl"
    rows = [
        {"run": "sentiment-pre", "rc": 0, "eval_accuracy": 50.0, "eval_macro_f1": 40.0, "epoch": 0.5, "train_samples": 1000},
        {"run": "sentiment-pre", "rc": 0, "eval_accuracy": 81.25, "eval_macro_f1": 80.5, "epoch": 0.5, "train_samples": 1000},
        {"run": "sentiment-scr", "rc": 1},
        {"run": "srl-pre", "rc": 0, "eval_f1": 42.04, "epoch": 2.0, "train_samples": 4300},
    ]
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = _module().main([str(results)])
    lines = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()}
    sentiment = lines["SST-2 sentiment (872)"]
    assert "| 81.2 / 80.5 | failed |" in sentiment and "~0.5k of 1.0k (0.50 ep.)" in sentiment
    assert "| 42.0 | not run |" in lines["English EWT SRL (692 predicates)"]
    assert "| not run | not run |" in lines["DialogSum (500)"]
    # Every task has a published figure with a source (or says none was found).
    for task in ("SST-2", "Multi30k", "DialogSum", "SQuAD", "English EWT"):
        row = next(line for name, line in lines.items() if name.startswith(task))
        assert "(" in row.rsplit("|", 2)[-2]
