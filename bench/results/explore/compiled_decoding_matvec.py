"""The matrix-vector products of a forge-small decoding step, three ways (session 12; the figures behind the
bf16/fp16 rewrite in modeling/generation_forge.py). Run from the repository root, nothing else running:

    python bench/results/explore/compiled_decoding_matvec.py > bench/results/explore/compiled_decoding_matvec.log

1. One eager ``F.linear`` on one row, per layer shape, fp32 and bf16 weights (microseconds per call).
2. A chain of the step's 25 products (4 layers x qkv, out, q, out, fc1, fc2, then the 8000 x 256 lm_head and argmax),
   compiled as one graph: library ``F.linear`` against ``(x * W).sum(-1)``, fp32, and the sum form with bf16 weights.
3. The whole compiled_decoding generate() call (batch 1, 32 new tokens), fp32 weights, library products against the
   sum form (``REDUCED_DTYPES`` widened to fp32), with eager generate() beside them; 11 interleaved rounds, medians.
"""
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
import bench_model as bm  # noqa: E402
from modeling import generation_forge as gf  # noqa: E402

torch.set_num_threads(2)
print("load average at start", os.getloadavg(), "torch", torch.__version__, flush=True)


def per_call_us(fn, n: int) -> float:
    for _ in range(20):
        fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return 1e6 * (time.perf_counter() - start) / n


with torch.inference_mode():
    print("\n1. eager F.linear, one row, us per call")
    for out_features, in_features in [(768, 256), (256, 256), (1024, 256), (256, 1024), (8000, 256)]:
        row = []
        for dtype in (torch.float32, torch.bfloat16):
            layer = torch.nn.Linear(in_features, out_features).to(dtype)
            x = torch.randn(1, 1, in_features, dtype=dtype)
            row.append(per_call_us(lambda: layer(x), 2000))
        print(f"  {out_features:5d} x {in_features:4d}: fp32 {row[0]:6.1f}  bf16 {row[1]:6.1f}")

    shapes = [(768, 256), (256, 256), (256, 256), (256, 256), (1024, 256), (256, 1024)] * 4
    weights = [torch.randn(o, i) / i**0.5 for o, i in shapes]
    biases = [torch.randn(o) for o, _ in shapes]
    head = torch.randn(8000, 256)

    def chain(x, product, weights, head):
        for k, (w, b) in enumerate(zip(weights, biases)):
            following = weights[k + 1].shape[1] if k + 1 < len(weights) else 256
            x = torch.tanh(product(x, w, b)[:, :following])
        return product(x, head, torch.zeros(8000)).argmax(-1)

    def library(x, w, b):
        return F.linear(x, w, b)

    def as_sum(x, w, b):
        return (x[:, None, :] * w.float()).sum(-1) + b

    x = torch.randn(1, 256)
    half = [w.bfloat16() for w in weights]
    variants = {
        "fp32, library": torch.compile(lambda x: chain(x, library, weights, head), dynamic=False),
        "fp32, sum form": torch.compile(lambda x: chain(x, as_sum, weights, head), dynamic=False),
        "bf16, sum form": torch.compile(lambda x: chain(x, as_sum, half, head.bfloat16()), dynamic=False),
    }
    for fn in variants.values():
        fn(x)
    times = {name: [] for name in variants}
    for _ in range(5):
        for name, fn in variants.items():
            times[name].append(per_call_us(lambda: fn(x), 200))
    print("\n2. the 25 products of a step, compiled as one graph, us per step (median of 5 interleaved rounds)")
    for name, t in times.items():
        print(f"  {name:15s} {sorted(t)[2]:7.0f}")

pair = bm.build_pair("forge-small", "sdpa", None, torch.device("cpu"), {"vocab_size": 8000})
batch = bm.make_batch(8000, 1, 32, 1, torch.device("cpu"), seed=2)
model = pair["forge"].eval()


def generate(**kwargs):
    with torch.inference_mode():
        return model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=32,
                              min_new_tokens=32, do_sample=False, num_beams=1, **kwargs)


def with_products(step, fp32_as_sum: bool):
    def run():
        gf._compiled_greedy_step = step
        gf.REDUCED_DTYPES = (torch.float32,) if fp32_as_sum else (torch.bfloat16, torch.float16)
        return generate(compiled_decoding=True)
    return run


reference = generate()
fns = {
    "library": with_products(torch.compile(gf.greedy_step, dynamic=False), False),
    "sum form": with_products(torch.compile(gf.greedy_step, dynamic=False), True),
    "eager generate()": generate,
}
print("\n3. whole compiled_decoding call, fp32, same tokens as eager:",
      {name: bool(torch.equal(fn(), reference)) for name, fn in fns.items()})
times = bm.interleave(fns, 11, warmup=1, device=torch.device("cpu"))
print("   ms per new token (median of 11 interleaved rounds):",
      {name: round(1e3 * bm.median(t) / 32, 2) for name, t in times.items()})
print("load average at end", os.getloadavg())
