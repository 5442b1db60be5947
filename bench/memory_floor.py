"""How fast can this machine read weights for a batch-1 decoding step? (issue 19's "memory floor")

A batch-1 step multiplies one vector by every weight matrix once: a matrix-vector product whose cost, for matrices
that do not stay in cache between steps, is the rate at which one GEMV streams its matrix from memory. That rate
is not the copy rate: this script measures both, in one run::

    python bench/memory_floor.py --json bench/results/memory_floor_cpu.json

- ``gemv_cold``: ``F.linear`` of one vector with each of ``--copies`` matrices of ``--rows x --cols`` fp32 in turn
  (together far larger than the cache, so each product finds its matrix in memory), as the lm_head of forge-small
  with vocabulary 8000 (8000 x 256) sees it in a decoding step.
- ``gemv_warm``: the same product repeated on one matrix (cached).
- ``copy``: ``Tensor.copy_`` of a 100 MB buffer, counted as bytes read plus bytes written.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=8000)
    parser.add_argument("--cols", type=int, default=256)
    parser.add_argument("--copies", type=int, default=12, help="matrices cycled through for the cold product")
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    matrices = [torch.randn(args.rows, args.cols) for _ in range(args.copies)]
    vector = torch.randn(1, args.cols)
    matrix_bytes = args.rows * args.cols * 4
    with torch.inference_mode():
        for matrix in matrices:  # first touch
            F.linear(vector, matrix)
        start = time.perf_counter()
        for _ in range(args.repeats):
            for matrix in matrices:
                F.linear(vector, matrix)
        cold = (time.perf_counter() - start) / (args.repeats * args.copies)
        start = time.perf_counter()
        for _ in range(args.repeats * args.copies):
            F.linear(vector, matrices[0])
        warm = (time.perf_counter() - start) / (args.repeats * args.copies)
        source = torch.randn(25_000_000)
        target = torch.empty_like(source)
        target.copy_(source)
        start = time.perf_counter()
        for _ in range(10):
            target.copy_(source)
        copy_rate = 2 * source.numel() * 4 * 10 / (time.perf_counter() - start)
    result = {
        "shape": [args.rows, args.cols], "threads": torch.get_num_threads(), "torch": torch.__version__,
        "loadavg": os.getloadavg(),
        "gemv_cold_ms": 1e3 * cold, "gemv_cold_bytes_per_s": matrix_bytes / cold,
        "gemv_warm_ms": 1e3 * warm, "copy_bytes_per_s": copy_rate,
    }
    print(f"GEMV {args.rows}x{args.cols} fp32: cold {result['gemv_cold_ms']:.3f} ms "
          f"({result['gemv_cold_bytes_per_s'] / 1e9:.1f} GB/s), warm {result['gemv_warm_ms']:.3f} ms; "
          f"copy {copy_rate / 1e9:.1f} GB/s (read + write), {result['threads']} threads")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
