"""Forge vs BART of the same shape: training, generation, encoder throughput, peak memory, length scaling.

One command (defaults: forge-small shape, batch 16 x 128 source / 64 target tokens, fp32, sdpa, this CPU)::

    python bench/bench_model.py                       # full run, table on stdout, JSON under bench/results/
    python bench/bench_model.py --quick               # seconds-long smoke run on a micro shape
    python bench/bench_model.py --device cuda --dtype bf16 --extra-train-presets forge-base
    python bench/bench_model.py --encoder-mixer conv --decoder-mixer conv   # Forge with conv layers (vs BART)

Both models are built in ONE process with identical width, depth, heads, feed-forward size, vocabulary and maximum
positions, dropout 0 everywhere, the same attention kernel, and the same random inputs. Every measurement interleaves
the two models (A B, then B A, round after round) so that drift of a shared machine hits both; the figure reported is
the median over rounds. The structural differences that remain are those of the two designs and are listed in the
output (``STRUCTURAL_DIFFERENCES``).

Peak training memory on CPU is read from torch.profiler's allocation events (``profile_memory=True``): the highest
``total_allocated`` seen during one step, i.e. the bytes torch allocated above what was alive when the step began,
plus the bytes alive at the start (weights, buffers, AdamW state). It counts tensors, not the process RSS, so other
processes on the machine and the allocator's caching do not disturb it. On CUDA it is ``torch.cuda.max_memory_allocated``.

Model FLOPs (for MFU) are counted analytically from the shape, the same formula for both models: 2 FLOPs per
multiply-add of every linear layer, attention scores and values (causal self-attention counted at half), the lm_head,
times 3 for forward + backward. MFU is reported against two matmul rates measured in the same run, interleaved with
the models: a projection-shaped ``torch.mm`` ((batch*src) x d_model x ffn) and a large square one.

``--encoder-mixer`` / ``--decoder-mixer`` give Forge conv or recurrent token mixers (one name, or a comma-separated
list with one name per layer); BART stays attention, so the ratios then compare the two designs of mixing, and the
FLOPs (hence MFU) are counted for each model's own layers. The default JSON name then carries the mixers.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import transformers
from transformers import BartConfig, BartForConditionalGeneration, GenerationConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python bench/bench_model.py`: the checkout
from modeling import PRESETS, ForgeConfig, ForgeForConditionalGeneration, ForgeForSequenceClassification  # noqa: E402
from recipes.core.mfu import train_flops  # noqa: E402 - one FLOP count for the bench and the pretraining recipe's MFU


STRUCTURAL_DIFFERENCES = [
    "Forge: pre-norm layers + one final norm per stack; BART: post-norm layers + layernorm_embedding.",
    "Forge: fixed sinusoidal positions (no parameters, precomputed table); BART: learned positions (offset 2).",
    "Forge: fused q/k/v projection (one matmul) and fused cross-attention k/v; BART: separate q, k, v linears.",
    "Forge: token embeddings scaled by sqrt(d_model) (its default); BART: scale_embedding=False (as configured here).",
    "BART adds final_logits_bias (a vocab-size buffer) to the logits; Forge has no logits bias.",
    "Beam search: Forge reorders only the self-attention cache (cross-attention K/V are identical within a source); "
    "BART reorders both.",
]

FORGE, BART = "forge", "bart"
_SILENT = False  # set by --silent
BENCH_DIR = Path(__file__).resolve().parent


# ---------------------------------------------------------------------------------------------------------------
# Models and inputs
# ---------------------------------------------------------------------------------------------------------------


def forge_config(preset: str, attn: str, max_positions: int | None, mixers: dict | None = None) -> ForgeConfig:
    """The Forge preset with dropout 0, the requested attention kernel and token mixers (``mixer_overrides``)."""
    overrides = dict(dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, classifier_dropout=0.0)
    overrides.update(mixers or {})
    if max_positions is not None:
        overrides["max_position_embeddings"] = max_positions
    config = ForgeConfig.from_pretrained(preset, **overrides)
    config._attn_implementation = attn
    return config


def bart_config_like(config: ForgeConfig, attn: str) -> BartConfig:
    """A BART config with exactly Forge's shape, ids and dropout 0 (BART's own structure otherwise)."""
    bart = BartConfig(
        vocab_size=config.vocab_size,
        d_model=config.d_model,
        encoder_layers=config.encoder_layers,
        decoder_layers=config.decoder_layers,
        encoder_attention_heads=config.encoder_attention_heads,
        decoder_attention_heads=config.decoder_attention_heads,
        encoder_ffn_dim=config.encoder_ffn_dim,
        decoder_ffn_dim=config.decoder_ffn_dim,
        activation_function=config.activation_function,
        max_position_embeddings=config.max_position_embeddings,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        classifier_dropout=0.0,
        init_std=config.init_std,
        scale_embedding=False,
        pad_token_id=config.pad_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        decoder_start_token_id=config.decoder_start_token_id,
        forced_eos_token_id=None,
        forced_bos_token_id=None,
        tie_word_embeddings=True,
    )
    bart._attn_implementation = attn
    return bart


def mixer_overrides(args: argparse.Namespace) -> dict:
    """ForgeConfig fields from --encoder-mixer / --decoder-mixer / --conv-kernel-size / --recurrent-cell."""
    overrides: dict = {}
    for stack in ("encoder", "decoder"):
        names = [n.strip() for n in getattr(args, f"{stack}_mixer").split(",") if n.strip()]
        overrides[f"{stack}_mixer"] = names[0] if len(names) == 1 else names
    if args.conv_kernel_size is not None:
        overrides["conv_kernel_size"] = args.conv_kernel_size
    if args.recurrent_cell is not None:
        overrides["recurrent_cell"] = args.recurrent_cell
    return overrides


def config_overrides(args: argparse.Namespace) -> dict:
    """Forge config fields from the command line: the token mixers and ``--vocab``."""
    overrides = mixer_overrides(args)
    if getattr(args, "vocab", None):
        overrides["vocab_size"] = args.vocab
    return overrides


def build_pair(
    preset: str, attn: str, max_positions: int | None, device: torch.device, mixers: dict | None = None
) -> dict[str, torch.nn.Module]:
    """Forge and BART seq2seq models of the same shape, same seed, on ``device`` (fp32 weights)."""
    config = forge_config(preset, attn, max_positions, mixers)
    torch.manual_seed(0)
    forge = ForgeForConditionalGeneration(config).to(device)
    torch.manual_seed(0)
    bart = BartForConditionalGeneration(bart_config_like(config, attn)).to(device)
    generation = GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )
    for model in (forge, bart):
        model.generation_config = generation
    return {FORGE: forge, BART: bart}


def make_batch(vocab: int, batch: int, src_len: int, tgt_len: int, device: torch.device, seed: int = 0) -> dict:
    """Random token ids above the special ids, no padding (attention_mask all ones, as a packed batch)."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, vocab, (batch, src_len), generator=generator)
    labels = torch.randint(5, vocab, (batch, tgt_len), generator=generator)
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": torch.ones_like(input_ids).to(device),
        "labels": labels.to(device),
    }


def num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, dtype: str):
    """bf16 autocast (fp32 master weights and AdamW state), or nothing for fp32."""
    if dtype == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def interleave(fns: dict[str, Callable[[], None]], rounds: int, warmup: int, device: torch.device) -> dict[str, list]:
    """Seconds per call of each function, interleaved: A B, B A, A B ... (order flipped every round)."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            synchronize(device)
            start = time.perf_counter()
            fns[name]()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def train_step_fn(model, optimizer, batch: dict, device: torch.device, dtype: str) -> Callable[[], None]:
    """One training step: forward with labels (the model's own loss), backward, AdamW step, grads set to None."""

    def step() -> None:
        model.train()
        with autocast(device, dtype):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def generate_fn(model, batch: dict, num_beams: int, new_tokens: int, device, dtype) -> Callable[[], None]:
    """Exactly ``new_tokens`` new tokens per sequence (min = max), greedy or beam search, with the KV cache."""

    def run() -> None:
        model.eval()
        with torch.inference_mode(), autocast(device, dtype):
            out = model.generate(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                num_beams=num_beams,
                do_sample=False,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                use_cache=True,
            )
        # decoder_start + new tokens: a shorter output means generation stopped early and the rate would be wrong.
        assert out.shape[1] == new_tokens + 1, out.shape

    return run


def encoder_forward_fn(model, batch: dict, device, dtype) -> Callable[[], None]:
    def run() -> None:
        model.eval()
        with torch.inference_mode(), autocast(device, dtype):
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])

    return run


def matmul_fn(m: int, k: int, n: int, device, dtype: str, repeats: int) -> tuple[Callable[[], None], float]:
    """``repeats`` products (m x k) @ (k x n); returns the function and its FLOPs."""
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    a = torch.randn(m, k, device=device, dtype=torch_dtype)
    b = torch.randn(k, n, device=device, dtype=torch_dtype)
    out = torch.empty(m, n, device=device, dtype=torch_dtype)

    def run() -> None:
        for _ in range(repeats):
            torch.mm(a, b, out=out)

    return run, 2.0 * m * k * n * repeats


# ---------------------------------------------------------------------------------------------------------------
# FLOPs and memory
# ---------------------------------------------------------------------------------------------------------------


# mixing_flops and train_flops live in recipes/core/mfu.py: the pretraining recipe logs MFU with the same count.


def live_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> int:
    """Bytes of parameters, buffers and optimizer state (alive before and after a step)."""
    seen: set[int] = set()
    total = 0
    tensors = list(model.parameters()) + list(model.buffers())
    if optimizer is not None:
        for state in optimizer.state.values():
            tensors += [t for t in state.values() if torch.is_tensor(t)]
    for t in tensors:
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


def peak_step_memory(step: Callable[[], None], model, optimizer, device: torch.device) -> dict:
    """Peak bytes of tensors during one call of ``step`` (see the module docstring for the method)."""
    static = live_bytes(model, optimizer)
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {"peak_bytes": peak, "static_bytes": static, "peak_step_bytes": peak - static,
                "method": "torch.cuda.max_memory_allocated"}
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    peak_delta = 0
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation:
            peak_delta = max(peak_delta, node.extra_fields.total_allocated)
        stack.extend(node.children)
    return {"peak_bytes": static + peak_delta, "static_bytes": static, "peak_step_bytes": peak_delta,
            "method": "torch.profiler allocation events (max total_allocated during the step) + live weights/state"}


# ---------------------------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


def rate_entry(times: dict[str, list[float]], units: float, unit: str) -> dict:
    """Median seconds and units/s per model, plus the Forge/BART ratio of the rates."""
    entry = {name: {"median_s": median(t), "times_s": t, f"{unit}_per_s": units / median(t)} for name, t in times.items()}
    entry["ratio"] = entry[FORGE][f"{unit}_per_s"] / entry[BART][f"{unit}_per_s"]
    entry["unit"] = f"{unit}/s"
    if not _SILENT:
        print(f"[bench]   {unit}/s: forge {entry[FORGE][f'{unit}_per_s']:,.1f}, bart {entry[BART][f'{unit}_per_s']:,.1f}, "
              f"ratio {entry['ratio']:.3f}", file=sys.stderr, flush=True)
    return entry


def measure_training(pair, config, args, device, batch_size, src, tgt, rounds, warmup, with_memory=True) -> dict:
    batch = make_batch(config.vocab_size, batch_size, src, tgt, device)
    # fused=True: transformers' Trainer default ("adamw_torch_fused") on torch >= 2.8, CPU and CUDA alike.
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True) for name, m in pair.items()}
    steps = {name: train_step_fn(m, optimizers[name], batch, device, args.dtype) for name, m in pair.items()}
    times = interleave(steps, rounds, warmup=max(warmup, 1), device=device)  # warmup >= 1: AdamW state exists
    result = rate_entry(times, batch_size * (src + tgt), "tokens")
    result["shape"] = {"batch": batch_size, "src_len": src, "tgt_len": tgt}
    # BART's count (attention everywhere); Forge's own when it has conv/recurrent mixers.
    result["flops_per_step"] = train_flops(config, batch_size, src, tgt, attention_only=True)
    for name in pair:
        flops = train_flops(config, batch_size, src, tgt) if name == FORGE else result["flops_per_step"]
        result[name]["flops_per_step"] = flops
        result[name]["achieved_flops_per_s"] = flops / result[name]["median_s"]
    if with_memory:
        memory = {name: peak_step_memory(steps[name], pair[name], optimizers[name], device) for name in pair}
        result["memory"] = memory
        result["memory"]["ratio"] = memory[FORGE]["peak_bytes"] / memory[BART]["peak_bytes"]
    for opt in optimizers.values():  # free AdamW state before the next measurement
        opt.state.clear()
    for model in pair.values():
        model.zero_grad(set_to_none=True)
    return result


def measure_compiled_training(pair, config, args, device) -> dict:
    """Training step eager vs ``torch.compile`` (inductor, default mode, as ``--torch_compile true`` in the
    Trainer), for both models, all four interleaved (issue 19: compiled Forge >= 1.15x eager Forge, BART compiled
    the same way). The compiled module shares its model's parameters and optimizer; two warm-up calls compile."""
    batch = make_batch(config.vocab_size, args.batch, args.src_len, args.tgt_len, device)
    fns = {}
    optimizers = {}
    for name, model in pair.items():
        optimizers[name] = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
        fns[f"{name}_eager"] = train_step_fn(model, optimizers[name], batch, device, args.dtype)
        fns[f"{name}_compiled"] = train_step_fn(torch.compile(model), optimizers[name], batch, device, args.dtype)
    started = time.perf_counter()
    times = interleave(fns, args.rounds, warmup=2, device=device)
    units = args.batch * (args.src_len + args.tgt_len)
    out: dict = {key: {"median_s": median(t), "times_s": t, "tokens_per_s": units / median(t)} for key, t in times.items()}
    out["compiled_over_eager"] = {name: out[f"{name}_compiled"]["tokens_per_s"] / out[f"{name}_eager"]["tokens_per_s"]
                                  for name in pair}
    out["forge_compiled_over_bart_compiled"] = out[f"{FORGE}_compiled"]["tokens_per_s"] / out[f"{BART}_compiled"][
        "tokens_per_s"]
    out["wall_s_with_compilation"] = time.perf_counter() - started
    out["shape"] = {"batch": args.batch, "src_len": args.src_len, "tgt_len": args.tgt_len}
    for opt in optimizers.values():
        opt.state.clear()
    for model in pair.values():
        model.zero_grad(set_to_none=True)
    if not _SILENT:
        print(f"[bench]   compiled/eager: forge {out['compiled_over_eager'][FORGE]:.3f}, "
              f"bart {out['compiled_over_eager'][BART]:.3f}", file=sys.stderr, flush=True)
    return out


def run(args: argparse.Namespace) -> dict:
    global _SILENT
    _SILENT = args.silent
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.attn == "flash_attention_2":
        try:
            import flash_attn  # noqa: F401
        except ImportError as error:
            raise SystemExit("--attn flash_attention_2 needs the flash_attn package (and a GPU).") from error
    started = time.time()
    load_before = os.getloadavg()
    results: dict = {
        "meta": {
            "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]) if __name__ == "__main__" else "run()",
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
            "device": args.device,
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
            "dtype": args.dtype,
            "attn_implementation": args.attn,
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "loadavg_before": load_before,
            "shared_machine_note": args.note,
            "rounds": args.rounds,
            "statistic": "median over interleaved rounds (order flipped each round)",
            "optimizer": "torch.optim.AdamW(lr=1e-4, fused=True), the Trainer's default",
            "structural_differences": STRUCTURAL_DIFFERENCES,
        }
    }
    mixers = config_overrides(args)
    pair = build_pair(args.preset, args.attn, args.max_positions, device, mixers)
    config = pair[FORGE].config
    results["meta"]["preset"] = args.preset
    results["meta"]["mixers"] = {"encoder": config.layer_mixers("encoder"), "decoder": config.layer_mixers("decoder"),
                                 "conv_kernel_size": config.conv_kernel_size, "recurrent_cell": config.recurrent_cell}
    results["meta"]["shape"] = {k: getattr(config, k) for k in (
        "vocab_size", "d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads", "encoder_ffn_dim",
        "max_position_embeddings")}
    results["meta"]["params"] = {name: num_params(m) for name, m in pair.items()}

    # Matmul rate: two shapes, interleaved with each other (their rounds sit next to the training rounds).
    mm_shapes = {
        "mm_proj": (args.batch * args.src_len, config.d_model, config.encoder_ffn_dim),
        "mm_square": (args.square, args.square, args.square),
    }
    mm_fns, mm_flops = {}, {}
    for name, (m, k, n) in mm_shapes.items():
        mm_fns[name], mm_flops[name] = matmul_fn(m, k, n, device, args.dtype, repeats=args.mm_repeats)

    _log(args, "training step ...")
    training = measure_training(pair, config, args, device, args.batch, args.src_len, args.tgt_len, args.rounds,
                                args.warmup)
    mm_times = interleave(mm_fns, args.rounds, warmup=1, device=device)
    results["matmul"] = {
        name: {"shape_mkn": mm_shapes[name], "median_s": median(t), "flops_per_s": mm_flops[name] / median(t)}
        for name, t in mm_times.items()
    }
    for name in pair:
        for mm in mm_fns:
            training[name][f"mfu_vs_{mm}"] = training[name]["achieved_flops_per_s"] / results["matmul"][mm]["flops_per_s"]
    results["training"] = training
    if args.compiled_training:
        _log(args, "training step, eager vs torch.compile ...")
        results["training_compiled"] = measure_compiled_training(pair, config, args, device)

    gen_batch = make_batch(config.vocab_size, args.gen_batch, args.src_len, 1, device, seed=1)
    new_tokens = args.gen_batch * args.new_tokens
    for label, beams in (("greedy", 1), (f"beam{args.beams}", args.beams)):
        _log(args, f"generation {label} ...")
        fns = {name: generate_fn(m, gen_batch, beams, args.new_tokens, device, args.dtype) for name, m in pair.items()}
        results[f"generate_{label}"] = rate_entry(
            interleave(fns, args.rounds, warmup=args.warmup, device=device), new_tokens, "new_tokens")
        results[f"generate_{label}"]["shape"] = {"batch": args.gen_batch, "src_len": args.src_len,
                                                 "new_tokens": args.new_tokens, "num_beams": beams}

    if args.latency_src_len:
        results.update(measure_latency(pair, config, args, device))

    _log(args, "encoder-only forward ...")
    torch.manual_seed(0)
    classifier = ForgeForSequenceClassification(
        forge_config(args.preset, args.attn, args.max_positions, mixers)).to(device)
    encoders = {FORGE: classifier, BART: pair[BART].get_encoder()}
    fns = {name: encoder_forward_fn(m, gen_batch, device, args.dtype) for name, m in encoders.items()}
    results["encoder_forward"] = rate_entry(
        interleave(fns, args.rounds, warmup=args.warmup, device=device), args.gen_batch * args.src_len, "tokens")
    results["encoder_forward"]["what"] = "ForgeForSequenceClassification forward vs BartModel encoder forward"
    del classifier, encoders, pair

    for preset in args.extra_train_presets:
        _log(args, f"training step, {preset} ...")
        extra = build_pair(preset, args.attn, args.max_positions, device, mixers)
        entry = measure_training(extra, extra[FORGE].config, args, device, args.batch, args.src_len, args.tgt_len,
                                 args.rounds, args.warmup)
        for name in extra:
            for mm in mm_fns:
                entry[name][f"mfu_vs_{mm}"] = entry[name]["achieved_flops_per_s"] / results["matmul"][mm]["flops_per_s"]
        results[f"training_{preset}"] = entry
        del extra

    if args.scaling_lens:
        results["scaling"] = run_scaling(args, device)

    results["goals"] = goals(results)
    results["meta"]["loadavg_after"] = os.getloadavg()
    results["meta"]["wall_s"] = time.time() - started
    return results


# A 20-word request (issue 19's single-request case).
TWENTY_WORDS = "The committee approved the new plan for the river park on Monday after a long public debate in the town."


def sample_tokenizer(vocab_size: int):
    """A Forge tokenizer trained in seconds on the repository's sample corpus: the bench downloads nothing.

    Its vocabulary may come out smaller than the models' (the corpus is small); ids beyond it decode to nothing,
    which is all a latency measurement needs."""
    from tokenization import train_tokenizer

    path = BENCH_DIR.parent / "recipes" / "sample_data" / "pretrain" / "train.jsonl"
    texts = [json.loads(line)["text"] for line in path.open(encoding="utf-8") if line.strip()]
    return train_tokenizer(texts, vocab_size=vocab_size, show_progress=False)


def pipeline_fn(model, tokenizer, new_tokens: int, device, dtype, **generate_kwargs) -> Callable[[], None]:
    """One pipeline call on TWENTY_WORDS: tokenize, generate ``new_tokens`` greedily (or as ``generate_kwargs``
    say), decode.

    Both models run through Forge's summarization pipeline (plain ``Pipeline`` code around ``generate()``):
    transformers 5 no longer ships a summarization or text2text pipeline for BART to use instead."""
    from modeling.pipeline_forge import ForgeSummarizationPipeline

    pipe = ForgeSummarizationPipeline(model=model.eval(), tokenizer=tokenizer, device=device)
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, num_beams=1)
    kwargs.update(generate_kwargs)

    def run() -> None:
        with torch.inference_mode(), autocast(device, dtype):
            out = pipe(TWENTY_WORDS, **kwargs)
        assert isinstance(out[0]["summary_text"], str)

    return run


def measure_latency(pair, config, args, device) -> dict:
    """Single-request latency: batch-1 greedy ``generate()`` (ms per new token) and a whole pipeline call."""
    out = {}
    _log(args, "batch-1 greedy latency ...")
    one = make_batch(config.vocab_size, 1, args.latency_src_len, 1, device, seed=2)
    fns = {name: generate_fn(m, one, 1, args.new_tokens, device, args.dtype) for name, m in pair.items()}
    entry = rate_entry(interleave(fns, args.rounds, warmup=args.warmup, device=device), args.new_tokens, "new_tokens")
    for name in pair:
        entry[name]["ms_per_new_token"] = 1e3 * entry[name]["median_s"] / args.new_tokens
    entry["shape"] = {"batch": 1, "src_len": args.latency_src_len, "new_tokens": args.new_tokens, "num_beams": 1}
    out["latency_greedy_batch1"] = entry
    _log(args, "pipeline latency ...")
    tokenizer = sample_tokenizer(config.vocab_size)
    fns = {name: pipeline_fn(m, tokenizer, args.new_tokens, device, args.dtype) for name, m in pair.items()}
    entry = rate_entry(interleave(fns, args.rounds, warmup=args.warmup, device=device), 1, "requests")
    for name in pair:
        entry[name]["latency_ms"] = 1e3 * entry[name]["median_s"]
    entry["shape"] = {"input_words": len(TWENTY_WORDS.split()), "input_tokens": len(tokenizer(TWENTY_WORDS).input_ids),
                      "new_tokens": args.new_tokens, "tokenizer_vocab": len(tokenizer)}
    out["latency_pipeline"] = entry
    return out


def run_scaling(args, device: torch.device) -> dict:
    """Training step time and peak memory as the source grows, fixed batch and target: linear, not quadratic."""
    lens = args.scaling_lens
    pair = build_pair(args.preset, args.attn, max(max(lens), args.max_positions or 0), device, config_overrides(args))
    config = pair[FORGE].config
    rows = []
    for src in lens:
        _log(args, f"scaling src_len={src} ...")
        entry = measure_training(pair, config, args, device, args.scaling_batch, src, args.tgt_len,
                                 args.scaling_rounds, warmup=1)
        row = {"src_len": src, "batch": args.scaling_batch, "tgt_len": args.tgt_len}
        for name in pair:
            row[name] = {"step_s": entry[name]["median_s"], "tokens_per_s": entry[name]["tokens_per_s"],
                         "peak_bytes": entry["memory"][name]["peak_bytes"],
                         "peak_step_bytes": entry["memory"][name]["peak_step_bytes"]}
        heads = config.encoder_attention_heads
        row["one_score_matrix_bytes"] = args.scaling_batch * heads * src * src * 4  # what eager would hold per layer
        rows.append(row)
    for prev, row in zip(rows, rows[1:]):  # growth exponent: memory ~ src_len ** exponent between neighbours
        step = math.log(row["src_len"] / prev["src_len"])
        for name in (FORGE, BART):
            row[name]["memory_exponent"] = math.log(row[name]["peak_step_bytes"] / prev[name]["peak_step_bytes"]) / step
            row[name]["time_exponent"] = math.log(row[name]["step_s"] / prev[name]["step_s"]) / step
    del pair
    return {"what": "training step (fwd + bwd + AdamW), fixed batch and target length", "rows": rows}


def goals(results: dict) -> dict:
    """Issue 19's goals (the speed goals in force), each with what was measured and whether it is met.

    Throughput goals are Forge/BART ratios of the same run; the single-request goal is absolute: milliseconds per
    new token of a whole batch-1 ``generate()`` call (encoder and first step included, so a bound on the step)."""
    beam_key = next(k for k in results if k.startswith("generate_beam"))
    checks = {
        "greedy batch-16 new tokens/s >= 1.3x BART": (results["generate_greedy"]["ratio"], 1.3, True, "x"),
        f"{beam_key[9:]} batch-16 new tokens/s >= 1.3x BART": (results[beam_key]["ratio"], 1.3, True, "x"),
        "peak training memory <= BART": (results["training"]["memory"]["ratio"], 1.0, False, "x"),
    }
    if "training_compiled" in results:
        checks["compiled training >= 1.15x eager Forge"] = (
            results["training_compiled"]["compiled_over_eager"][FORGE], 1.15, True, "x")
    if "latency_greedy_batch1" in results:
        ms = results["latency_greedy_batch1"][FORGE]["ms_per_new_token"]
        checks["batch-1 greedy <= 2.2 ms per new token"] = (ms, 2.2, False, "ms")
    return {name: {"measured": value, "target": target, "unit": unit,
                   "met": value >= target if higher else value <= target}
            for name, (value, target, higher, unit) in checks.items()}


# ---------------------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------------------


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "cpu"


def _log(args, message: str) -> None:
    if not args.silent:
        print(f"[bench] {message}", file=sys.stderr, flush=True)


def format_table(results: dict) -> str:
    """The human-readable summary (Markdown table) printed at the end of a run."""
    meta = results["meta"]
    mixers = mixers_label(meta["mixers"]) if "mixers" in meta else ""
    lines = [
        f"Forge vs BART, {meta['preset']} shape, {meta['dtype']}, attn={meta['attn_implementation']}, "
        + (f"Forge mixers: {mixers}, " if mixers else "")
        + f"device={meta['device_name']}, torch threads={meta['torch_threads']} (cpu_count {meta['cpu_count']}), "
        f"median of {meta['rounds']} interleaved rounds",
        f"load average before/after: {_fmt_load(meta['loadavg_before'])} / {_fmt_load(meta.get('loadavg_after'))}"
        + (f"; {meta['shared_machine_note']}" if meta["shared_machine_note"] else ""),
        f"params: Forge {meta['params'][FORGE] / 1e6:.2f}M, BART {meta['params'][BART] / 1e6:.2f}M",
        "",
        "| metric | Forge | BART | Forge/BART |",
        "|---|---:|---:|---:|",
    ]

    def row(label: str, entry: dict, key: str, scale: float = 1.0, fmt: str = "{:,.0f}") -> None:
        lines.append(f"| {label} | {fmt.format(entry[FORGE][key] * scale)} | {fmt.format(entry[BART][key] * scale)} "
                     f"| {entry[FORGE][key] / entry[BART][key]:.2f}x |")

    t = results["training"]
    shape = t["shape"]
    row(f"train tokens/s ({shape['batch']}x{shape['src_len']}+{shape['tgt_len']}, fwd+bwd+AdamW)", t, "tokens_per_s")
    for mm in ("mm_proj", "mm_square"):
        mkn = "x".join(str(v) for v in results["matmul"][mm]["shape_mkn"])
        row(f"train MFU vs {mm} {mkn} ({results['matmul'][mm]['flops_per_s'] / 1e9:.1f} GFLOP/s)", t,
            f"mfu_vs_{mm}", 100.0, "{:.1f}%")
    row("peak train memory MiB", t["memory"], "peak_bytes", 1 / 2**20, "{:,.1f}")
    row("  of which allocated during the step MiB", t["memory"], "peak_step_bytes", 1 / 2**20, "{:,.1f}")
    if "training_compiled" in results:
        c = results["training_compiled"]
        lines.append(f"| train tokens/s, torch.compile | {c[FORGE + '_compiled']['tokens_per_s']:,.0f} | "
                     f"{c[BART + '_compiled']['tokens_per_s']:,.0f} | {c['forge_compiled_over_bart_compiled']:.2f}x |")
        lines.append(f"| compiled / eager training (same run) | {c['compiled_over_eager'][FORGE]:.2f}x | "
                     f"{c['compiled_over_eager'][BART]:.2f}x | - |")
    for key in results:
        if key.startswith("generate_"):
            g = results[key]
            s = g["shape"]
            row(f"{key[9:]} new tokens/s (batch {s['batch']}, {s['new_tokens']} new)", g, "new_tokens_per_s", 1.0,
                "{:,.1f}")
    if "latency_greedy_batch1" in results:
        g = results["latency_greedy_batch1"]
        row(f"batch-1 greedy ms per new token ({g['shape']['src_len']} source tokens, {g['shape']['new_tokens']} new; "
            "lower is better)", g, "ms_per_new_token", 1.0, "{:.2f}")
        p = results["latency_pipeline"]
        row(f"pipeline latency ms ({p['shape']['input_words']} words, {p['shape']['new_tokens']} new tokens; lower is "
            "better)", p, "latency_ms", 1.0, "{:.1f}")
    e = results["encoder_forward"]
    row("encoder-only forward tokens/s", e, "tokens_per_s")
    for key in results:
        if key.startswith("training_forge-"):
            row(f"train tokens/s, {key[9:]} shape", results[key], "tokens_per_s")
            row(f"train MFU vs mm_square, {key[9:]}", results[key], "mfu_vs_mm_square", 100.0, "{:.1f}%")
    lines.append(f"\npeak memory method: {t['memory'][FORGE]['method']}")
    if "scaling" in results:
        lines += ["", f"Scaling ({results['scaling']['what']}):", "",
                  "| src_len | batch | Forge step s | BART step s | Forge/BART speed | Forge step MiB | BART step MiB | "
                  "mem exponent Forge / BART | one eager score matrix MiB |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in results["scaling"]["rows"]:
            exponent = (f"{r[FORGE]['memory_exponent']:.2f} / {r[BART]['memory_exponent']:.2f}"
                        if "memory_exponent" in r[FORGE] else "-")
            lines.append(
                f"| {r['src_len']} | {r['batch']} | {r[FORGE]['step_s']:.3f} | {r[BART]['step_s']:.3f} | "
                f"{r[BART]['step_s'] / r[FORGE]['step_s']:.2f}x | {r[FORGE]['peak_step_bytes'] / 2**20:,.1f} | "
                f"{r[BART]['peak_step_bytes'] / 2**20:,.1f} | {exponent} | {r['one_score_matrix_bytes'] / 2**20:,.1f} |")
        lines.append("(step MiB = bytes allocated during the step above weights/AdamW state; exponent = "
                     "log(mem ratio)/log(len ratio) between neighbouring rows: 1 linear, 2 quadratic)")
    lines += ["", "Goals:"]
    for name, g in results["goals"].items():
        lines.append(f"  [{'met' if g['met'] else 'NOT met'}] {name}: measured {g['measured']:.2f}{g['unit']}")
    lines += ["", "Structural differences that remain:"] + [f"  - {d}" for d in STRUCTURAL_DIFFERENCES]
    return "\n".join(lines)


def mixers_label(mixers: dict) -> str:
    """'' for attention everywhere, else e.g. 'encoder conv,attention / decoder recurrent'."""
    if all(kind == "attention" for stack in ("encoder", "decoder") for kind in mixers[stack]):
        return ""
    parts = []
    for stack in ("encoder", "decoder"):
        kinds = mixers[stack]
        parts.append(f"{stack} {kinds[0] if len(set(kinds)) == 1 else ','.join(kinds)}")
    return " / ".join(parts)


def _fmt_load(load) -> str:
    return "n/a" if load is None else "/".join(f"{v:.1f}" for v in load)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--preset", default="forge-small", choices=sorted(PRESETS), help="shape of both models")
    parser.add_argument("--batch", type=int, default=16, help="training batch size")
    parser.add_argument("--src-len", type=int, default=128, help="source tokens per example")
    parser.add_argument("--tgt-len", type=int, default=64, help="target tokens per example")
    parser.add_argument("--gen-batch", type=int, default=16, help="generation / encoder-forward batch size")
    parser.add_argument("--new-tokens", type=int, default=32, help="new tokens per generated sequence (min = max)")
    parser.add_argument("--beams", type=int, default=4, help="beams of the beam-search measurement")
    parser.add_argument("--compiled-training", action="store_true",
                        help="also time the training step under torch.compile, both models (compiles take minutes)")
    parser.add_argument("--latency-src-len", type=int, default=32,
                        help="source tokens of the batch-1 latency measurements (0: skip them and the pipeline call)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"), help="bf16 = autocast, fp32 weights")
    parser.add_argument("--attn", default="sdpa", choices=("sdpa", "eager", "flex_attention", "flash_attention_2"))
    parser.add_argument("--max-positions", type=int, default=None, help="max_position_embeddings (default: preset)")
    parser.add_argument("--vocab", type=int, default=None, help="vocabulary size of both models (default: preset)")
    parser.add_argument("--encoder-mixer", default="attention",
                        help="Forge's encoder token mixer: attention, conv or recurrent, or a comma-separated list "
                             "with one per layer (e.g. conv,conv,attention,attention); BART stays attention")
    parser.add_argument("--decoder-mixer", default="attention", help="the same for Forge's decoder self-attention")
    parser.add_argument("--conv-kernel-size", type=int, default=None, help="conv mixers' kernel (None: the config's)")
    parser.add_argument("--recurrent-cell", choices=("gru", "lstm"), default=None,
                        help="recurrent mixers' cell (None: the config's)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per model before timing")
    parser.add_argument("--square", type=int, default=2048, help="size of the square matmul of the rate reference")
    parser.add_argument("--mm-repeats", type=int, default=3, help="matmuls per timed call")
    parser.add_argument("--scaling-lens", type=lambda s: [int(v) for v in s.split(",") if v],
                        default=[128, 256, 512, 1024, 2048], help="source lengths of the scaling table ('' = skip)")
    parser.add_argument("--scaling-batch", type=int, default=2, help="batch size of the scaling table")
    parser.add_argument("--scaling-rounds", type=int, default=3, help="interleaved rounds per scaling row")
    parser.add_argument("--extra-train-presets", nargs="*", default=[], help="also measure training at these presets")
    parser.add_argument("--note", default="",
                        help="free-text note on machine load, printed and stored (the load average always is)")
    parser.add_argument("--json", default=None, help="results file (default bench/results/<device>_<dtype>_<preset>.json)")
    parser.add_argument("--quick", action="store_true", help="micro shape, 1 round: checks the code path in seconds")
    parser.add_argument("--silent", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.src_len, args.tgt_len, args.gen_batch, args.new_tokens = 2, 16, 8, 2, 4
        args.rounds, args.warmup, args.square, args.mm_repeats = 1, 0, 64, 1
        args.scaling_lens, args.scaling_batch, args.scaling_rounds = [16, 32], 1, 1
        args.latency_src_len = min(args.latency_src_len, 8)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print the table, write the JSON; returns the results dict."""
    args = parse_args(argv)
    results = run(args)
    table = format_table(results)
    results["table"] = table
    label = mixers_label(results["meta"]["mixers"]).replace(" / ", "_").replace(" ", "-").replace(",", "-")
    name = f"{args.device}_{args.dtype}_{args.preset}" + (f"_{label}" if label else "")
    path = Path(args.json) if args.json else BENCH_DIR / "results" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=float))
    print(table)
    print(f"\nresults written to {path}")
    return results


if __name__ == "__main__":
    main()
