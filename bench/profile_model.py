"""torch.profiler tables of Forge and BART at the benchmark's shape: what dominates a training step or a generate.

    python bench/profile_model.py --what train            # forward + backward + AdamW, 16 x 128 / 64
    python bench/profile_model.py --what greedy           # generate, 32 new tokens
    python bench/profile_model.py --what beam4

Prints, per model, the top operators by self CPU time and the total, and writes Chrome traces under
bench/results/traces/ if ``--trace`` is given. Same models and inputs as bench_model.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_model", Path(__file__).with_name("bench_model.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--what", default="train", choices=("train", "greedy", "beam4", "encoder"))
    parser.add_argument("--preset", default="forge-small")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--src-len", type=int, default=128)
    parser.add_argument("--tgt-len", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--models", default="forge,bart")
    parser.add_argument("--trace", action="store_true", help="also write Chrome traces")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    bench = _load_bench()
    device = torch.device("cpu")
    pair = bench.build_pair(args.preset, "sdpa", None, device)
    vocab = pair["forge"].config.vocab_size
    for name in args.models.split(","):
        model = pair[name]
        if args.what == "train":
            batch = bench.make_batch(vocab, args.batch, args.src_len, args.tgt_len, device)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
            fn = bench.train_step_fn(model, optimizer, batch, device, "fp32")
        elif args.what == "encoder":
            batch = bench.make_batch(vocab, args.batch, args.src_len, 1, device)
            fn = bench.encoder_forward_fn(model.get_encoder(), batch, device, "fp32")
        else:
            batch = bench.make_batch(vocab, args.batch, args.src_len, 1, device, seed=1)
            beams = 1 if args.what == "greedy" else 4
            fn = bench.generate_fn(model, batch, beams, args.new_tokens, device, "fp32")
        fn()  # warm-up (and AdamW state)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
            fn()
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=48)
        print(f"\n===== {name}: {args.what} =====\n{table}")
        if args.trace:
            out = Path(__file__).parent / "results" / "traces"
            out.mkdir(parents=True, exist_ok=True)
            prof.export_chrome_trace(str(out / f"{name}_{args.what}.json"))
        model.zero_grad(set_to_none=True)


if __name__ == "__main__":
    main()
