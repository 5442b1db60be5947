"""torch.profiler tables of Forge and BART at the benchmark's shape: what dominates a training step or a generate.

    python bench/profile_model.py --what train            # forward + backward + AdamW, 16 x 128 / 64
    python bench/profile_model.py --what greedy           # generate, 32 new tokens
    python bench/profile_model.py --what beam4
    python bench/profile_model.py --what decode_step --batch 1   # one cached decoding step, per layer and phase

Prints, per model, the top operators by self CPU time and the total, then a breakdown by category (matmuls,
attention kernels, log-softmax, optimizer, everything else) with the bound it puts on any Forge/BART speed-up at equal
FLOPs, and writes Chrome traces under bench/results/traces/ if ``--trace`` is given. Same models and inputs as
bench_model.py. ``--repeat N`` profiles N calls (the breakdown is their sum), which steadies it on a busy machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_model", Path(__file__).with_name("bench_model.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Self-time categories. "work" = what the same maths must do in any implementation of this shape: the matrix
# products, the attention kernels, the log-softmax (the training loss; beam search's token scores) and the
# optimizer update. The rest (norms, activations, residual adds, copies, masks, framework bookkeeping) is where
# an implementation can differ.
CATEGORIES = {
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addmv", "aten::mv"),
    "attention": ("scaled_dot_product", "flash_attention"),
    "log_softmax": ("log_softmax", "nll_loss", "cross_entropy"),
    "optimizer": ("adam",),
}


def categorize(prof, wall: float) -> dict[str, float]:
    """Seconds per category: each operator's self CPU time (never its children's), and ``outside_ops`` = wall time
    not spent inside any operator (Python, generate()'s loop, the profiler itself)."""
    totals = dict.fromkeys([*CATEGORIES, "other"], 0.0)
    for event in prof.key_averages():
        seconds = event.self_cpu_time_total / 1e6
        name = event.key.lower()
        category = next((c for c, keys in CATEGORIES.items() if any(k in name for k in keys)), "other")
        totals[category] += seconds
    totals["outside_ops"] = max(wall - sum(totals.values()), 0.0)
    totals["total"] = max(wall, sum(totals.values()))
    return totals


def speedup_bounds(forge: dict[str, float], bart: dict[str, float]) -> dict[str, float]:
    """Upper bounds on BART time / Forge time from the profiles (Amdahl).

    ``all_overhead_removed``: Forge keeps only its matmul, attention, log-softmax and optimizer time (every other operator
    and all time outside operators free).
    ``matmuls_only``: Forge spends nothing but its matmul time (not reachable: the attention kernels, log-softmax
    and optimizer are part of the same maths).
    """
    work = sum(forge[c] for c in CATEGORIES)
    return {
        "measured": bart["total"] / forge["total"],
        "all_overhead_removed": bart["total"] / work,
        "matmuls_only": bart["total"] / forge["matmul"],
    }


class PhaseTimer:
    """Wall time spent inside given submodules (forward hooks), e.g. encoder / decoder stack / lm_head of a
    generate() call; whatever is left of the call's wall time is generate()'s own loop (logits processors,
    stopping criteria, cache bookkeeping, input preparation)."""

    def __init__(self, modules: dict[str, torch.nn.Module]):
        self.seconds = dict.fromkeys(modules, 0.0)
        self._start: dict[str, float] = {}
        self._handles = []
        for name, module in modules.items():
            self._handles.append(module.register_forward_pre_hook(self._enter(name)))
            self._handles.append(module.register_forward_hook(self._leave(name)))

    def _enter(self, name):
        def hook(module, inputs):
            self._start[name] = time.perf_counter()

        return hook

    def _leave(self, name):
        def hook(module, inputs, output):
            self.seconds[name] += time.perf_counter() - self._start.pop(name)

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def generation_phases(model, fn, repeat: int) -> dict[str, float]:
    """Seconds per phase over ``repeat`` generate() calls, without the profiler (it inflates Python overhead)."""
    timer = PhaseTimer(
        {"encoder": model.get_encoder(), "decoder": model.get_decoder(), "lm_head": model.get_output_embeddings()}
    )
    try:
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        wall = time.perf_counter() - start
    finally:
        timer.remove()
    phases = dict(timer.seconds)
    phases["generate_loop"] = wall - sum(phases.values())
    phases["total"] = wall
    return phases


def decode_step_split(model, batch: dict, steps: int, prefix: int = 8) -> dict:
    """Wall seconds per decoding step of a Forge seq2seq model, per decoder layer and sublayer, from cached
    one-token forwards after a ``prefix``-token prefill (what generate() runs per new token, without its loop).

    Sublayers are timed with forward hooks; ``layerN.rest`` is the layer's norms, dropouts and residual adds,
    ``forward_rest`` the step's time outside the layers and the lm_head (embedding, positions, masks, cache and
    output objects). ``memory_floor_bytes`` is what a step must read at least: the decoder's and lm_head's weights.
    """
    decoder = model.get_decoder()
    modules = {"lm_head": model.get_output_embeddings(), "final_norm": decoder.final_norm}
    for i, layer in enumerate(decoder.layers):
        modules[f"layer{i}"] = layer
        for part in ("self_attn", "encoder_attn", "ffn"):
            if hasattr(layer, part):
                modules[f"layer{i}.{part}"] = getattr(layer, part)
    vocab = model.config.vocab_size
    with torch.no_grad():
        encoder_outputs = model.get_encoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        rows = batch["input_ids"].shape[0]
        tokens = torch.randint(5, vocab, (rows, prefix + steps), generator=torch.Generator().manual_seed(2))
        out = model(encoder_outputs=encoder_outputs, attention_mask=batch["attention_mask"],
                    decoder_input_ids=tokens[:, :prefix], use_cache=True)
        timer = PhaseTimer(modules)
        try:
            start = time.perf_counter()
            for step in range(prefix, prefix + steps):
                out = model(encoder_outputs=encoder_outputs, attention_mask=batch["attention_mask"],
                            decoder_input_ids=tokens[:, step:step + 1], cache=out.cache, use_cache=True)
            wall = time.perf_counter() - start
        finally:
            timer.remove()
    seconds = {name: value / steps for name, value in timer.seconds.items()}
    split: dict[str, float] = {}
    for i in range(len(decoder.layers)):
        parts = {k: v for k, v in seconds.items() if k.startswith(f"layer{i}.")}
        split.update(parts)
        split[f"layer{i}.rest"] = max(seconds[f"layer{i}"] - sum(parts.values()), 0.0)
    split["final_norm"] = seconds["final_norm"]
    split["lm_head"] = seconds["lm_head"]
    layers_total = sum(seconds[f"layer{i}"] for i in range(len(decoder.layers)))
    split["forward_rest"] = max(wall / steps - layers_total - seconds["final_norm"] - seconds["lm_head"], 0.0)
    weights = list(decoder.parameters()) + [model.get_output_embeddings().weight]
    floor = sum(t.numel() * t.element_size() for t in {id(t): t for t in weights}.values())
    return {"step_seconds": wall / steps, "split_seconds": split, "memory_floor_bytes": floor}


def format_breakdown(name: str, totals: dict[str, float]) -> str:
    parts = ", ".join(
        f"{c} {totals[c]:.3f}s ({100 * totals[c] / totals['total']:.0f}%)" for c in [*CATEGORIES, "other", "outside_ops"]
    )
    return f"{name}: total {totals['total']:.3f}s = {parts}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--what", default="train", choices=("train", "greedy", "beam4", "encoder", "decode_step"))
    parser.add_argument("--preset", default="forge-small")
    parser.add_argument("--vocab", type=int, default=None, help="vocabulary size of both models (default: preset)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--src-len", type=int, default=128)
    parser.add_argument("--tgt-len", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--models", default="forge,bart")
    parser.add_argument("--trace", action="store_true", help="also write Chrome traces")
    parser.add_argument("--repeat", type=int, default=1, help="calls profiled per model (summed)")
    parser.add_argument("--json", type=Path, help="also write the breakdown and bounds to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    bench = _load_bench()
    device = torch.device("cpu")
    pair = bench.build_pair(args.preset, "sdpa", None, device, {"vocab_size": args.vocab} if args.vocab else None)
    vocab = pair["forge"].config.vocab_size
    if args.what == "decode_step":  # Forge only: the split follows Forge's module names
        batch = bench.make_batch(vocab, args.batch, args.src_len, 1, device, seed=1)
        decode_step_split(pair["forge"], batch, 2)  # warm-up
        report = {"what": "decode_step", "batch": args.batch, "threads": args.threads,
                  **decode_step_split(pair["forge"], batch, args.new_tokens)}
        step = report["step_seconds"]
        print(f"forge decode step, batch {args.batch}: {1e3 * step:.3f} ms; weights read per step "
              f"{report['memory_floor_bytes'] / 1e6:.1f} MB")
        for name, value in report["split_seconds"].items():
            print(f"  {name:24s} {1e3 * value:8.3f} ms ({100 * value / step:4.1f}%)")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2) + "\n")
        return
    breakdowns: dict[str, dict[str, float]] = {}
    phases: dict[str, dict[str, float]] = {}
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
            start = time.perf_counter()
            for _ in range(args.repeat):
                fn()
            wall = time.perf_counter() - start
        breakdowns[name] = categorize(prof, wall)
        if args.what in ("greedy", "beam4"):
            phases[name] = generation_phases(model, fn, args.repeat)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=48)
        print(f"\n===== {name}: {args.what} =====\n{table}")
        if args.trace:
            out = Path(__file__).parent / "results" / "traces"
            out.mkdir(parents=True, exist_ok=True)
            prof.export_chrome_trace(str(out / f"{name}_{args.what}.json"))
        model.zero_grad(set_to_none=True)
    print(f"\n===== time by category: {args.what}, {args.repeat} call(s), {args.threads} thread(s) =====")
    for name, totals in breakdowns.items():
        print(format_breakdown(name, totals))
    report = {"what": args.what, "threads": args.threads, "repeat": args.repeat, "seconds": breakdowns}
    if {"forge", "bart"} <= breakdowns.keys():
        report["forge_over_bart_speedup"] = bounds = speedup_bounds(breakdowns["forge"], breakdowns["bart"])
        print(
            "Forge/BART speed (BART time / Forge time): measured {measured:.2f}x; bound if everything but matmuls, "
            "attention, log-softmax and optimizer were free {all_overhead_removed:.2f}x; bound if Forge did nothing but its "
            "matmuls {matmuls_only:.2f}x".format(**bounds)
        )
    if phases:
        report["generation_phases_seconds"] = phases
        print("\n===== generate() phases (wall time, no profiler) =====")
        for name, values in phases.items():
            print(f"{name}: " + ", ".join(f"{k} {v:.3f}s" for k, v in values.items()))
        if {"forge", "bart"} <= phases.keys():
            forge, bart = phases["forge"], phases["bart"]
            bound = bart["total"] / (forge["total"] - forge["decoder"])
            report["forge_over_bart_speedup_if_forge_decoder_free"] = bound
            print(
                f"Forge/BART: measured {bart['total'] / forge['total']:.2f}x; bound if Forge's decoder stack took no "
                f"time at all (encoder, lm_head and generate()'s loop kept) {bound:.2f}x"
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
