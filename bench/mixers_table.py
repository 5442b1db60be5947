"""README's token-mixer table from bench/mixers_compare.sh's results file (one JSON object per run).

    python bench/mixers_table.py bench/results/mixers_cpu_15min.jsonl

One markdown row per mixer: parameters, SST-2 accuracy / macro-F1 and Multi30k sacreBLEU / chrF on the full
validation splits, and how many training examples each run processed within the same wall-clock budget (the
speed of the mixer, as the score's context). A rerun of the same run replaces the earlier record.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is a folder of scripts, not a package
from finetune_table import load_runs, seen  # noqa: E402

MIXERS = ("attention", "conv", "recurrent", "hybrid")  # the runs of bench/mixers_compare.sh, in table order
TASKS = {
    "sentiment": [("eval_accuracy", "accuracy"), ("eval_macro_f1", "macro-F1")],
    "translation": [("eval_bleu", "sacreBLEU"), ("eval_chrf", "chrF")],
}


def describe(mixer: str, config: dict | None) -> str:
    """The mixer as the run configured it (kernel size, cell, per-layer list), from the record's config."""
    if not config:
        return mixer
    if mixer == "conv":
        return f"conv (lightweight, kernel {config['conv_kernel_size']})"
    if mixer == "recurrent":
        return f"recurrent ({config['recurrent_cell'].upper()}, bidirectional encoder)"
    if mixer == "hybrid":
        return f"hybrid (encoder {'/'.join(config['encoder_mixer'])}; decoder {'/'.join(config['decoder_mixer'])})"
    return mixer


def cell(row: dict | None, metrics: list[tuple[str, str]]) -> str:
    if row is None:
        return "not run"
    if row.get("rc") != 0:
        return "failed"
    return " / ".join(f"{row[key]:.1f}" for key, _ in metrics)


def table(runs: dict[str, dict]) -> str:
    lines = [
        "| token mixer | parameters | SST-2 accuracy / macro-F1 | SST-2 seen | Multi30k de->en sacreBLEU / chrF | "
        "Multi30k seen |",
        "|---|---:|---:|---|---:|---|",
    ]
    for mixer in MIXERS:
        rows = {task: runs.get(f"{task}-{mixer}") for task in TASKS}
        params = next((r["params"] for r in rows.values() if r and "params" in r), None)
        config = next((r["config"] for r in rows.values() if r and r.get("config")), None)
        cells = [describe(mixer, config), f"{params / 1e6:.2f}M" if params else "-"]
        for task, metrics in TASKS.items():
            cells += [cell(rows[task], metrics), seen(rows[task] or {})]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# (label, results key, per-model field, higher is better) for the speed table, from bench_model.py's JSON
SPEED = (
    ("train tokens/s", "training", "tokens_per_s", True),
    ("greedy b16 new tokens/s", "generate_greedy", "new_tokens_per_s", True),
    ("beam-4 b16 new tokens/s", "generate_beam4", "new_tokens_per_s", True),
    ("batch-1 greedy ms/token", "latency_greedy_batch1", "ms_per_new_token", False),
    ("encoder tokens/s", "encoder_forward", "tokens_per_s", True),
)


def speed_table(files: list[Path]) -> str:
    """One row per bench_model.py JSON (one mixer each): Forge's rate and its ratio to BART measured in the same
    run (the ratio is what compares across runs: BART is the same model in every run, the machine's speed is not)."""
    import json

    lines = ["| token mixer | " + " | ".join(label for label, *_ in SPEED) + " | train step at 512 src tokens |",
             "|---|" + "---:|" * (len(SPEED) + 1)]
    for path in files:
        result = json.loads(path.read_text(encoding="utf-8"))
        mixers = result["meta"].get("mixers", {})
        name = "/".join(dict.fromkeys(mixers.get("encoder", ["attention"])))  # e.g. conv, or conv/attention
        cells = [name]
        for _, key, field, higher in SPEED:
            entry = result.get(key)
            if not entry:
                cells.append("-")
                continue
            forge, bart = entry["forge"][field], entry["bart"][field]
            cells.append(f"{forge:,.1f} ({forge / bart if higher else bart / forge:.2f}x)")
        rows = [r for r in result.get("scaling", {}).get("rows", []) if r.get("src_len") == 512]
        cells.append(f"{rows[0]['forge']['step_s']:.3f} s ({rows[0]['bart']['step_s'] / rows[0]['forge']['step_s']:.2f}x)"
                     if rows else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, nargs="?", help="the JSON Lines file written by bench/mixers_compare.sh")
    parser.add_argument("--speed", type=Path, nargs="+", default=[], metavar="JSON",
                        help="bench_model.py JSONs, one per mixer: the speed table instead (Forge, and Forge vs BART "
                        "of the same run; above 1x = Forge faster)")
    args = parser.parse_args(argv)
    if not args.speed and args.results is None:
        parser.error("give the results file of bench/mixers_compare.sh, or --speed with bench_model.py JSONs")
    text = speed_table(args.speed) if args.speed else table(load_runs(args.results))
    print(text)
    return text


if __name__ == "__main__":
    main()
