"""Why is a translation step with a 16k vocabulary 1.9x slower than with 8k? A synthetic forge-small step (batch 64,
24 source + 24 target tokens, AdamW) with transformers' LabelSmoother (as the Trainer applies --label_smoothing_factor)
and with Forge's own cross-entropy, at 8,000 and 16,384 tokens, then a profile of the LabelSmoother step; since the
session-11 change, also the smoothed loss inside Forge (``smoothing=``).
Session 11: ``python bench/results/explore/label_smoothing_step.py`` (log: label_smoothing_step.log)."""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root
import modeling
from modeling import ForgeConfig, ForgeForConditionalGeneration
from transformers.trainer_pt_utils import LabelSmoother
torch.set_num_threads(2)
B, S, T = 64, 24, 24
ls = LabelSmoother(0.1)
def step(model, opt, batch, mode):
    if mode == "labelsmoother":
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], decoder_input_ids=batch["dec"])
        loss = ls(out, batch["labels"])
    else:  # plain_ce, or forge_smoothed: the label-smoothed loss inside Forge (what the recipes' Trainer now uses)
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], decoder_input_ids=batch["dec"],
                     labels=batch["labels"], smoothing=0.1 if mode == "forge_smoothed" else 0.0).loss
    loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
for vocab in (8000, 16384):
    torch.manual_seed(0)
    cfg = ForgeConfig.from_pretrained("forge-small", vocab_size=vocab)
    model = ForgeForConditionalGeneration(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    batch = {"input_ids": torch.randint(5, vocab, (B, S)), "attention_mask": torch.ones(B, S, dtype=torch.long),
             "dec": torch.randint(5, vocab, (B, T)), "labels": torch.randint(5, vocab, (B, T))}
    for mode in ("labelsmoother", "plain_ce", "forge_smoothed"):
        for _ in range(2): step(model, opt, batch, mode)
        t = []
        for _ in range(5):
            t0 = time.perf_counter(); step(model, opt, batch, mode); t.append(time.perf_counter() - t0)
        t.sort(); print(f"vocab {vocab} {mode}: {1e3*t[2]:.0f} ms/step", flush=True)
    from torch.profiler import profile, ProfilerActivity
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3): step(model, opt, batch, "labelsmoother")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
