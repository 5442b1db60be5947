"""LoRA vs full fine-tuning on one task (sentiment) at the same budget: trainable parameters, peak memory
(max resident set size of the run's own process) and the task metric.

    python bench/lora_vs_full.py --base outputs/main_job/pretrained --data-dir ../shared/data/sentiment \
        --max-steps 300 --out bench/results/lora_vs_full.jsonl

Each run is a fresh Python process (so its peak memory is its own); one JSON line per run is appended to
--out as it ends, with the command, the load average and the git commit. Timings are not compared here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys
sys.path.insert(0, {repo!r})
from recipes import sentiment
metrics = sentiment.main({argv!r})
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT " + json.dumps({{"metrics": metrics, "peak_rss_mb": peak_mb}}))
"""


def trainable_parameters(base: str, lora: bool, r: int) -> tuple[int, int]:
    sys.path.insert(0, str(REPO))
    from transformers import AutoModelForSequenceClassification

    import modeling  # noqa: F401
    from recipes.core.lora import apply_lora

    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2)
    total = sum(p.numel() for p in model.parameters())
    if not lora:
        return total, total
    args = argparse.Namespace(lora_r=r, lora_alpha=2 * r, lora_dropout=0.05, lora_target_modules=None)
    model = apply_lora(model, args)
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="a pretrained Forge folder")
    parser.add_argument("--data-dir", required=True, help="folder with train.jsonl and validation.jsonl (SST-2 layout)")
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--max-train-samples", type=int, default=None)
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--full-lr", type=float, default=1e-4)
    parser.add_argument("--lora-lr", type=float, default=1e-3)
    parser.add_argument("--modes", nargs="+", choices=["full", "lora"], default=["full", "lora"],
                        help="which runs (e.g. only lora, to try another --lora-lr against a recorded full run)")
    parser.add_argument("--out", default=str(REPO / "bench/results/lora_vs_full.jsonl"))
    args = parser.parse_args()
    # the runs start in the repository root: paths given relative to where this script was called must still hold
    args.base = str(Path(args.base).resolve()) if Path(args.base).exists() else args.base  # else a Hub id
    args.data_dir = str(Path(args.data_dir).resolve())

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    for mode in args.modes:
        with tempfile.TemporaryDirectory() as tmp:
            argv = [
                "--model_name_or_path", args.base, "--train_file", f"{args.data_dir}/train.jsonl",
                "--validation_file", f"{args.data_dir}/validation.jsonl", "--do_train", "--do_eval",
                "--max_steps", str(args.max_steps), "--per_device_train_batch_size", "32", "--seed", "42",
                "--learning_rate", str(args.lora_lr if mode == "lora" else args.full_lr), "--warmup_steps", "0.1",
                "--report_to", "none", "--disable_tqdm", "true", "--save_strategy", "no", "--output_dir", f"{tmp}/run",
            ]
            if args.max_train_samples:
                argv += ["--max_train_samples", str(args.max_train_samples)]
            if mode == "lora":
                argv += ["--use_lora", "true", "--lora_r", str(args.lora_r), "--lora_alpha", str(2 * args.lora_r)]
            load_before = os.getloadavg()
            done = subprocess.run([sys.executable, "-c", CHILD.format(repo=str(REPO), argv=argv)], cwd=REPO,
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"{mode} run failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
            result = json.loads(done.stdout.split("RESULT ", 1)[1].splitlines()[0])
        trainable, total = trainable_parameters(args.base, mode == "lora", args.lora_r)
        record = {
            "mode": mode, "trainable_parameters": trainable, "total_parameters": total,
            "peak_rss_mb": round(result["peak_rss_mb"], 1), "eval_accuracy": result["metrics"].get("eval_accuracy"),
            "max_steps": args.max_steps, "learning_rate": args.lora_lr if mode == "lora" else args.full_lr,
            "base": args.base, "load_average_before": load_before,
            "load_average_after": os.getloadavg(), "commit": commit, "command": " ".join(sys.argv),
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        print(json.dumps(record))


if __name__ == "__main__":
    main()
