"""Where a compiled_decoding generate() call spends its time: per-call setup vs per decoding step, and a cProfile
of 10 calls (session 12). Run from the repository root: python bench/results/explore/compiled_decoding_phases.py
(BF16=1 for bfloat16 weights). Per step = (32-token call - 2-token call) / 30, medians of 9 interleaved rounds."""
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "bench")); sys.path.insert(0, str(ROOT))
print("load average at start", os.getloadavg())
import bench_model as bm
torch.set_num_threads(2)
pair = bm.build_pair("forge-small", "sdpa", None, torch.device("cpu"), {"vocab_size": 8000})
b = bm.make_batch(8000, 1, 32, 1, torch.device("cpu"), seed=2)
m = pair["forge"].eval()
if os.environ.get("BF16"): m = m.to(torch.bfloat16)
def run(n, **kw):
    with torch.inference_mode():
        return m.generate(input_ids=b["input_ids"], attention_mask=b["attention_mask"], max_new_tokens=n, min_new_tokens=n, do_sample=False, num_beams=1, **kw)
run(32, compiled_decoding=True); run(2, compiled_decoding=True)
ts = {}
for _ in range(9):
    for key, n, kw in [("c2", 2, {"compiled_decoding": True}), ("c32", 32, {"compiled_decoding": True}), ("e2", 2, {}), ("e32", 32, {})]:
        t = time.perf_counter(); run(n, **kw); ts.setdefault(key, []).append(time.perf_counter() - t)
med = {k: sorted(v)[4] * 1e3 for k, v in ts.items()}
print({k: round(v, 1) for k, v in med.items()})
print("compiled per step", (med["c32"] - med["c2"]) / 30, "eager per step", (med["e32"] - med["e2"]) / 30)
import cProfile, pstats
pr = cProfile.Profile(); pr.enable()
for _ in range(10): run(32, compiled_decoding=True)
pr.disable()
st = pstats.Stats(pr); st.sort_stats("tottime").print_stats(18)
