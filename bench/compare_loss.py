"""Forge vs BART of the same shape: training-loss curves step by step, through the same recipe.

    OMP_NUM_THREADS=1 python bench/compare_loss.py --task translation \
        --train_file /tmp/mt2k.jsonl --tokenizer_name outputs/tok-mt8k --config_name forge-small --steps 300 \
        --json bench/results/loss_forge_vs_bart_mt2k.json -- --source_lang de --target_lang en --max_source_length 64

Both runs use the same seed, data order, tokenizer, optimizer, schedule and number of optimizer steps; only
``--architecture`` differs. The script prints the training loss of both side by side (logged every
``--logging_steps``) and the mean over the last quarter of the steps; a Forge curve that falls clearly slower
than BART's points at a defect in Forge, not at the budget. Anything after ``--`` goes to the recipe as is.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python bench/compare_loss.py`: the checkout

RECIPES = ("sentiment", "translation", "summarization", "qa", "srl")


def run_one(task: str, architecture: str, args: argparse.Namespace, extra: list[str], output_dir: Path) -> list[tuple[int, float]]:
    """Train ``architecture`` for ``args.steps`` steps; returns [(step, training loss)]."""
    recipe = importlib.import_module(f"recipes.{task}")
    argv = [
        "--architecture", architecture, "--config_name", args.config_name, "--tokenizer_name", args.tokenizer_name,
        "--train_file", args.train_file, "--do_train", "--max_steps", str(args.steps), "--seed", str(args.seed),
        "--per_device_train_batch_size", str(args.batch_size), "--learning_rate", str(args.learning_rate),
        "--warmup_steps", str(args.warmup_steps), "--lr_scheduler_type", args.lr_scheduler_type,
        "--logging_steps", str(args.logging_steps), "--save_strategy", "no", "--report_to", "none",
        "--disable_tqdm", "true", "--dataloader_pin_memory", "false", "--output_dir", str(output_dir),
        "--overwrite_output_dir",
    ]
    if args.config_overrides:
        argv += ["--config_overrides", args.config_overrides]
    recipe.main(argv + extra)
    state = json.loads((output_dir / "trainer_state.json").read_text(encoding="utf-8"))
    return [(row["step"], row["loss"]) for row in state["log_history"] if "loss" in row]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=RECIPES, default="translation")
    parser.add_argument("--train_file", required=True)
    parser.add_argument("--tokenizer_name", required=True)
    parser.add_argument("--config_name", default="forge-small")
    parser.add_argument("--config_overrides", default=None)
    parser.add_argument("--architectures", nargs="+", default=["forge", "bart"])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=5e-4)
    parser.add_argument("--warmup_steps", type=float, default=30)
    parser.add_argument("--lr_scheduler_type", default="linear")
    parser.add_argument("--logging_steps", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path, default=None, help="write the curves and the command here")
    parser.add_argument("--work_dir", type=Path, default=None)
    if argv is None:
        import sys

        argv = sys.argv[1:]
    ours, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    args = parser.parse_args(ours)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="forge-compare-"))
    curves = {arch: run_one(args.task, arch, args, extra, work / arch) for arch in args.architectures}
    steps = sorted({s for curve in curves.values() for s, _ in curve})
    lookup = {arch: dict(curve) for arch, curve in curves.items()}
    print("| step | " + " | ".join(args.architectures) + " |")
    print("|---:|" + "---:|" * len(args.architectures))
    for step in steps:
        print(f"| {step} | " + " | ".join(f"{lookup[a].get(step, float('nan')):.3f}" for a in args.architectures) + " |")
    tail = {}
    for arch, curve in curves.items():
        last = [loss for step, loss in curve if step > 0.75 * args.steps]
        tail[arch] = sum(last) / max(len(last), 1)
    print("mean loss over the last quarter: " + ", ".join(f"{a} {v:.3f}" for a, v in tail.items()))
    result = {
        "task": args.task, "steps": args.steps, "curves": curves, "last_quarter_mean": tail,
        "command": "python bench/compare_loss.py " + " ".join(argv),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "loadavg": os.getloadavg(),
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
