"""A small, resumable sweep of one recipe over named variants at an equal CPU budget (issue 13, part 2).

    python bench/sweep.py --name mt-scratch --module recipes.translation \
        --base "--config_name forge-small --tokenizer_name runs/tok-mt8k --train_file ... --max_train_minutes 5" \
        --variant lr1e-3="--learning_rate 1e-3" --variant lr2e-3="--learning_rate 2e-3" \
        --results bench/results/sweep_translation.jsonl

Each variant runs the recipe with ``--base`` + its own flags (later flags win in HfArgumentParser, so a variant
may override a base flag) into ``<runs_dir>/<name>-<variant>``; when it ends one JSON line is appended to
``--results``: sweep name, variant, the recipe's train/eval results, wall time, the load average at start and
end, the exact command and the git commit. A variant already recorded is skipped, so rerunning the same command
after an interruption runs only what is missing. ``--print`` shows the recorded table without running anything.

The point is a fair comparison: every variant gets the same ``--max_train_minutes`` of training time on the same
machine, one after another, with nothing else running (the load average says whether that held).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from quality import results_of, git_commit, load_records as load  # noqa: E402  (one copy of each)


def show(rows: list[dict], keys: list[str]) -> None:
    print("| sweep | variant | " + " | ".join(keys) + " | epoch | train min | load start-end |")
    print("|---|---|" + "---:|" * (len(keys) + 2) + "---|")
    for r in rows:
        res = r.get("results", {})
        cells = [f"{res[k]:.4g}" if isinstance(res.get(k), (int, float)) else "-" for k in keys]
        print(f"| {r['sweep']} | {r['variant']} | " + " | ".join(cells)
              + f" | {res.get('epoch', 0):.2f} | {res.get('train_runtime', 0) / 60:.1f}"
              + f" | {r['loadavg_start'][0]:.1f}-{r['loadavg_end'][0]:.1f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="the sweep's name (recorded with every row)")
    parser.add_argument("--module", required=True, help="the recipe module, e.g. recipes.translation")
    parser.add_argument("--base", default="", help="flags every variant gets (one shell-quoted string)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=FLAGS",
                        help="a named variant and its extra flags; repeat for each variant")
    parser.add_argument("--results", required=True, help="JSONL file, one line per finished run")
    parser.add_argument("--runs_dir", default="outputs/sweeps")
    parser.add_argument("--keys", nargs="+", default=["eval_loss"], help="result keys shown by --print")
    parser.add_argument("--print", action="store_true", help="print the recorded rows of this sweep and stop")
    args = parser.parse_args(argv)

    results = Path(args.results)
    if args.print:
        show([r for r in load(results) if r["sweep"] == args.name and r["rc"] == 0], args.keys)
        return
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    for item in args.variant:
        variant, _, flags = item.partition("=")
        if any(r["sweep"] == args.name and r["variant"] == variant and r["rc"] == 0 for r in load(results)):
            print(f"[skip] {args.name}/{variant} (recorded)", flush=True)
            continue
        folder = Path(args.runs_dir) / f"{args.name}-{variant}"
        command = [sys.executable, "-m", args.module, *shlex.split(args.base), *shlex.split(flags),
                   "--output_dir", str(folder), "--overwrite_output_dir", "true"]
        print(f"[run ] {args.name}/{variant}: {shlex.join(command)}", flush=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        load_start, started = os.getloadavg(), time.time()
        with open(folder.parent / f"{args.name}-{variant}.log", "w", encoding="utf-8") as log:
            rc = subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
        row = {"sweep": args.name, "variant": variant, "rc": rc, "wall_s": round(time.time() - started, 1),
               "loadavg_start": [round(x, 2) for x in load_start],
               "loadavg_end": [round(x, 2) for x in os.getloadavg()], "command": shlex.join(command),
               "git_commit": git_commit(), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "results": results_of(folder)}
        results.parent.mkdir(parents=True, exist_ok=True)
        with open(results, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        shown = {k: row["results"].get(k) for k in args.keys}
        print(f"[done] {args.name}/{variant}: rc={rc} {shown}", flush=True)


if __name__ == "__main__":
    main()
