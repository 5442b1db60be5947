"""SRL span F1 against the number of training predicates (issue 13: is the SRL goal a budget or a data limit?).

Reads the 10-minute scratch runs at the SRL recipe's defaults: `srl_data_size.jsonl` and
`srl_data_size_2142.jsonl` (the first 1,071 and 2,142 training predicates, `--max_train_samples`) and the two
full-data seeds (`srl_defaults_fast_path*.jsonl`, 4,285). Fits F1 = a + b * log2(predicates) by least squares over
the runs, and, since the gain per doubling shrinks, a saturating power law F1 = c - b * predicates^-a (a on a grid,
c and b by least squares) whose c is the F1 that unlimited data of this kind would give at this budget. Prints the
table, where each fit reaches the goal (55), and draws `srl_data_size.png`. Extrapolations from three data sizes,
to read as orders of magnitude, not forecasts.

    python bench/results/explore/srl_data_size.py
"""

import json
import math
from pathlib import Path

HERE = Path(__file__).resolve().parent
FILES = ("srl_data_size.jsonl", "srl_data_size_2142.jsonl", "srl_defaults_fast_path.jsonl",
         "srl_defaults_fast_path_seed43.jsonl")
GOAL = 55.0


def runs() -> list[dict]:
    out = []
    for name in FILES:
        for line in (HERE / name).read_text().splitlines():
            record = json.loads(line)
            if record.get("task") != "srl" or record.get("rc") != 0:
                continue
            results = record["results"]
            out.append({"predicates": int(results["train_samples"]), "f1": float(record["value"]),
                        "epochs": float(results["epoch"]), "seed": record["seed"], "file": name})
    return sorted(out, key=lambda r: (r["predicates"], r["seed"]))


def least_squares_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """(intercept, slope) of the least-squares line through the points (both fits use it)."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - slope * mx, slope


def saturating_fit(rows: list[dict]) -> tuple[float, float, float]:
    """F1 = c - b * n^-a: for each exponent a on a grid, c and b by least squares; the a with the least error."""
    best = None
    for step in range(5, 301):
        a = step / 100
        zs = [r["predicates"] ** -a for r in rows]
        ys = [r["f1"] for r in rows]
        c, slope = least_squares_line(zs, ys)
        b = -slope
        error = sum((c - b * z - y) ** 2 for z, y in zip(zs, ys))
        if best is None or error < best[0]:
            best = (error, a, c, b)
    return best[1], best[2], best[3]


def main() -> None:
    rows = runs()
    xs = [math.log2(r["predicates"]) for r in rows]
    ys = [r["f1"] for r in rows]
    intercept, slope = least_squares_line(xs, ys)
    print("| training predicates | seed | span F1 | epochs in 10 min | record |")
    print("|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['predicates']:,} | {r['seed']} | {r['f1']:.1f} | {r['epochs']:.1f} | `{r['file']}` |")
    at_goal = 2 ** ((GOAL - intercept) / slope)
    print(f"\nfit: F1 = {intercept:.1f} + {slope:.2f} * log2(predicates); {slope:.1f} F1 per doubling; "
          f"F1 {GOAL:.0f} at about {at_goal:,.0f} predicates ({at_goal / 4285:.1f}x the 4,285 here)")

    a, c, b = saturating_fit(rows)
    reach = f"F1 {GOAL:.0f} at about {(b / (c - GOAL)) ** (1 / a):,.0f} predicates" if c > GOAL else f"never F1 {GOAL:.0f}"
    print(f"saturating fit: F1 = {c:.1f} - {b:.0f} * predicates^-{a:.2f}; limit {c:.1f} with unlimited data; {reach}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([r["predicates"] for r in rows], ys, label="10-minute runs (recipe defaults)")
    grid = [2 ** (min(xs) + i * (math.log2(at_goal * 1.2) - min(xs)) / 50) for i in range(51)]
    ax.plot(grid, [intercept + slope * math.log2(g) for g in grid], "--", label="least-squares fit in log2(predicates)")
    ax.plot(grid, [c - b * g ** -a for g in grid], ":", label=f"saturating fit (limit {c:.1f})")
    ax.axhline(GOAL, color="gray", linewidth=0.8, label=f"goal {GOAL:.0f}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training predicates (first N of the 4,285)")
    ax.set_ylabel("span F1, validation (692 predicates)")
    ax.set_title("EWT SRL from scratch: F1 against training data")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "srl_data_size.png", dpi=110)
    print(f"wrote {HERE / 'srl_data_size.png'}")


if __name__ == "__main__":
    main()
