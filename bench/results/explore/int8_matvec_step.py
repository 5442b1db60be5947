"""The 25 matrix-vector products of one forge-small decoding step (4 decoder layers: fused q/k/v, output, cross q,
cross output, two feed-forward; then the 8000 x 256 lm_head), looped alone: fp32, bf16, and int8 weights with bf16
activations through ``torch.ops.aten._weight_int8pack_mm`` (the kernel inductor lowers torchao's int8 weight-only
products to). Batch 1, 2 threads. Session 24 (issue 19)::

    python bench/results/explore/int8_matvec_step.py | tee bench/results/explore/int8_matvec_step.log
"""

import os
import time

import torch

torch.set_num_threads(2)
torch.manual_seed(0)
shapes = [(768, 256), (256, 256), (256, 256), (256, 256), (1024, 256), (256, 1024)] * 4 + [(8000, 256)]
weights = [torch.randn(*shape) for shape in shapes]


def int8(weight):
    scale = weight.abs().amax(1) / 127
    return torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8), scale.bfloat16()


quantized = [int8(w) for w in weights]
halves = [w.bfloat16() for w in weights]
x = {256: torch.randn(1, 256), 1024: torch.randn(1, 1024)}
xb = {k: v.bfloat16() for k, v in x.items()}


def step_fp32():
    for w in weights:
        torch.nn.functional.linear(x[w.shape[1]], w)


def step_bf16():
    for w in halves:
        torch.nn.functional.linear(xb[w.shape[1]], w)


def step_int8():
    for w, scale in quantized:
        torch.ops.aten._weight_int8pack_mm(xb[w.shape[1]], w, scale)


def ms(step, n=300):
    for _ in range(20):
        step()
    start = time.perf_counter()
    for _ in range(n):
        step()
    return 1e3 * (time.perf_counter() - start) / n


print(f"load average {os.getloadavg()}, torch {torch.__version__}, {sum(w.numel() for w in weights) / 1e6:.2f}M weights")
for round_ in range(5):
    print(f"round {round_}: fp32 {ms(step_fp32):.3f} ms  bf16 {ms(step_bf16):.3f} ms  int8 weights, bf16 activations {ms(step_int8):.3f} ms")
