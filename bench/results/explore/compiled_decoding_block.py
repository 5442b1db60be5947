"""Greedy steps per compiled call (``generation_forge.GREEDY_BLOCK``, from ``compiled_decoding_block.patch`` applied to
``modeling/generation_forge.py`` at 823e87e; not kept): 1 against 4 and 8, fp32 and bf16, batch 1,
with eager Forge and eager BART of the same shape in the same interleaved rounds (session 13, issue 19).

    python bench/results/explore/compiled_decoding_block.py [--batch 1] [--rounds 9] > LOG

Each variant's tokens are compared with eager fp32 Forge's (bf16 with eager bf16 Forge's).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))
import bench_model as bm  # noqa: E402

from modeling import generation_forge  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--blocks", default="1,4,8")
    args = parser.parse_args()
    print("load average at start", os.getloadavg(), "torch", torch.__version__, "threads", torch.get_num_threads())
    pair = bm.build_pair("forge-small", "sdpa", None, torch.device("cpu"), {"vocab_size": 8000})
    batch = bm.make_batch(8000, args.batch, 32, 1, torch.device("cpu"), seed=2)
    forge, bart = pair["forge"].eval(), pair["bart"].eval()
    half = copy.deepcopy(forge).to(torch.bfloat16)

    def call(model, block=None, new_tokens=args.new_tokens):
        def run():
            kwargs = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False}
            if block is not None:
                generation_forge.GREEDY_BLOCK = block
                kwargs["compiled_decoding"] = True
            with torch.inference_mode():
                return model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kwargs)
        return run

    fns = {"bart_eager": call(bart), "forge_eager": call(forge), "forge_bf16_eager": call(half)}
    references = {"fp32": fns["forge_eager"](), "bf16": fns["forge_bf16_eager"]()}
    report = {}
    for precision, model in (("fp32", forge), ("bf16", half)):
        for block in [int(b) for b in args.blocks.split(",")]:
            key = f"forge_{precision}_block{block}"
            fn = call(model, block)
            start = time.perf_counter()
            out = fn()
            report[key] = {"first_call_s": round(time.perf_counter() - start, 1),
                           "same_tokens": bool(torch.equal(out, references[precision]))}
            fn()
            fns[key] = fn
    times = bm.interleave(fns, args.rounds, warmup=0, device=torch.device("cpu"))
    base = bm.median(times["bart_eager"])
    for key, t in times.items():
        ms = 1e3 * bm.median(t) / args.new_tokens
        report.setdefault(key, {}).update({"ms_per_new_token": round(ms, 3), "vs_bart_eager": round(base / bm.median(t), 3)})
        print(f"{key:24s} {ms:6.2f} ms/token  x{base / bm.median(t):.2f} vs BART eager  {report[key]}")
    print("load average at end", os.getloadavg())
    print(json.dumps(report))


if __name__ == "__main__":
    main()
