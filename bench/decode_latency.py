"""Batch-1 greedy decoding, the ways transformers 5 offers to run it, for Forge and BART in one process (issue 19).

Variants, each a normal ``generate()`` call (32 new tokens, exactly; 32-token source, forge-small shape):

- ``eager``: the default dynamic KV cache, eager PyTorch.
- ``static``: ``cache_implementation="static"`` (a preallocated cache), still eager.
- ``static_compiled``: the same with transformers' own automatic compilation of the decoding step
  (``CompileConfig``; on a CPU it needs ``_compile_all_devices=True``, mode ``default``: CUDA graphs do not apply).
- ``bf16``, ``bf16_static_compiled``: ``eager`` and ``static_compiled`` on a copy of the model whose weights are
  bfloat16 (what ``from_pretrained(..., dtype=torch.bfloat16)`` gives): half the bytes read per step, which is what
  a batch-1 step is bound by on a CPU (``bench/memory_floor.py``). CPUs with AVX512-BF16 or AMX compute it natively.

- ``compiled_decoding``, ``bf16_compiled_decoding`` (Forge only): ``generate(..., compiled_decoding=True)``, Forge's
  own decoding loop with one compiled decoder step on a static cache (``modeling/generation_forge.py``).
- ``int8``, ``int8_compiled_decoding`` (the latter Forge only): the model saved and loaded back the way a user
  quantizes at load time, ``from_pretrained(folder, dtype=torch.bfloat16,
  quantization_config=TorchAoConfig(Int8WeightOnlyConfig()))`` (torchao, ``pip install -e ".[int8]"``): every linear
  layer but the tied ``lm_head`` holds int8 weights with a bf16 scale per output row, a quarter of the fp32 bytes.

``--pipeline`` also times one pipeline call per variant (issue 19's single request: a 20-word input, 32 new greedy
tokens, tokenizing and decoding included; Forge's summarization pipeline for both models, as ``bench_model.py``
does), with the variant's weights and ``generate()`` switches.

``--batch`` sets the number of sources per call (default 1; issue 19 also asks for 16). The fp32 variants must
generate the tokens of ``eager`` (checked). bf16 and int8 round every weight, so their tokens may
differ: reported as the share of new tokens equal to fp32 ``eager``'s. Reported: median ms per new token over interleaved
rounds, and each variant's ratio to eager BART. ``bench/profile_model.py --what decode_step`` splits one step of
the eager path by layer; this script says what the library's switches already buy end to end::

    python bench/decode_latency.py --json bench/results/decode_latency_cpu.json
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import CompileConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_model as bm  # noqa: E402 - same models, inputs and interleaving as the Forge-vs-BART bench

VARIANTS = ("eager", "static", "static_compiled", "bf16", "bf16_static_compiled", "compiled_decoding",
            "bf16_compiled_decoding", "int8", "int8_compiled_decoding")
FORGE_ONLY = ("compiled_decoding", "bf16_compiled_decoding", "int8_compiled_decoding")
PRECISIONS = ("bf16", "int8")  # variant prefixes that name a copy of the model with other weights
SHORT, SHORT_SUFFIX = 2, "@short"  # --steady-state
PIPELINE_SUFFIX = "@pipeline"  # --pipeline


def split_variant(variant: str) -> tuple[str, str]:
    """``"int8_compiled_decoding"`` -> ``("int8", "compiled_decoding")``; ``"bf16"`` -> ``("bf16", "eager")``;
    ``"static"`` -> ``("fp32", "static")``: the weights a variant runs with, and how it decodes."""
    precision, _, rest = variant.partition("_")
    if precision in PRECISIONS:
        return precision, rest or "eager"
    return "fp32", variant


def generate_kwargs(variant: str, new_tokens: int, num_beams: int = 1) -> dict:
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, num_beams=num_beams)
    variant = split_variant(variant)[1]
    if variant == "compiled_decoding":
        return {**kwargs, "compiled_decoding": True}
    if variant != "eager":
        kwargs["cache_implementation"] = "static"
    if variant == "static_compiled":
        config = CompileConfig(mode="default", fullgraph=False)
        config._compile_all_devices = True  # not an __init__ argument: transformers reads the attribute
        kwargs["compile_config"] = config
    else:
        kwargs["disable_compile"] = True
    return kwargs


def int8_copy(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` saved and loaded back with int8 weight-only quantization, as a user would load a trained folder."""
    from torchao.quantization import Int8WeightOnlyConfig
    from transformers import TorchAoConfig

    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        quantized = type(model).from_pretrained(
            folder, dtype=torch.bfloat16, quantization_config=TorchAoConfig(Int8WeightOnlyConfig())
        )
    quantized.generation_config = model.generation_config
    return quantized.eval()


def copies(model: torch.nn.Module, variants: list[str]) -> dict[str, torch.nn.Module]:
    """The model each variant runs: the fp32 model, or its bf16 / int8 copy."""
    made = {"fp32": lambda: model, "bf16": lambda: copy.deepcopy(model).to(torch.bfloat16),
            "int8": lambda: int8_copy(model)}
    held = {precision: made[precision]() for precision in {split_variant(v)[0] for v in variants}}
    return {v: held[split_variant(v)[0]] for v in variants}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="forge-small")
    parser.add_argument("--vocab", type=int, default=8000, help="issue 19's shape: vocabulary 8000")
    parser.add_argument("--src-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1, help="sources per generate() call")
    parser.add_argument("--beams", type=int, default=1,
                        help="beam search with this many beams (always transformers' loop: compiled decoding hands beam search to it)")
    parser.add_argument("--steady-state", action="store_true",
                        help=f"also time each variant with {SHORT} new tokens (interleaved) and report the steady-state "
                        f"cost of one decoding step: (t(new_tokens) - t({SHORT})) / (new_tokens - {SHORT})")
    parser.add_argument("--pipeline", action="store_true",
                        help="also time a pipeline call per variant (20-word input, --new-tokens new tokens)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--quick", action="store_true", help="forge-tiny, 4 tokens, 1 round: the code path only")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.preset, args.vocab, args.src_len, args.new_tokens, args.rounds = "forge-tiny", 512, 8, 4, 1
    torch.set_num_threads(args.threads)
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown --variants {sorted(unknown)}; choose from {VARIANTS}")
    device = torch.device("cpu")
    pair = bm.build_pair(args.preset, "sdpa", None, device, {"vocab_size": args.vocab})
    batch = bm.make_batch(args.vocab, args.batch, args.src_len, 1, device, seed=2)
    results: dict = {"meta": {
        "preset": args.preset, "vocab": args.vocab, "src_len": args.src_len, "new_tokens": args.new_tokens,
        "batch": args.batch, "beams": args.beams,
        "rounds": args.rounds, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "loadavg_start": os.getloadavg(), "statistic": "median over interleaved rounds (order flipped each round)",
    }}

    def call(model, variant, new_tokens=args.new_tokens):
        def run():
            with torch.inference_mode():
                return model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                      **generate_kwargs(variant, new_tokens, args.beams))
        return run

    tokenizer = bm.sample_tokenizer(args.vocab) if args.pipeline else None

    fns, first_call_s, same_tokens, agreement = {}, {}, {}, {}
    for name, model in pair.items():
        model.eval()
        reference = call(model, "eager")()
        models = copies(model, [v for v in variants if name == "forge" or v not in FORGE_ONLY])
        for variant in variants:
            if variant in FORGE_ONLY and name != "forge":
                continue
            key = f"{name}_{variant}"
            fn = call(models[variant], variant)
            start = time.perf_counter()
            try:
                out = fn()  # the first call compiles (static_compiled): timed apart, not in the median
            except Exception as error:  # a variant the model does not support is reported, not fatal
                results[key] = {"error": f"{type(error).__name__}: {error}"[:500]}
                print(f"{key:24s} failed: {results[key]['error']}")
                continue
            first_call_s[key] = time.perf_counter() - start
            fn()  # and a second one, so that no round pays a recompilation for the decoding shapes
            same_tokens[key] = bool(torch.equal(out, reference))
            new = slice(reference.shape[1] - args.new_tokens, None)  # the generated part of each row
            agreement[key] = float((out[:, new] == reference[:, new]).float().mean()) if out.shape == reference.shape else 0.0
            fns[key] = fn
            if args.steady_state:  # the same call with SHORT new tokens: the difference is the per-step cost
                short = call(models[variant], variant, SHORT)
                short()
                fns[f"{key}{SHORT_SUFFIX}"] = short
            if args.pipeline:
                request = bm.pipeline_fn(models[variant], tokenizer, args.new_tokens, device, "fp32",
                                         **generate_kwargs(variant, args.new_tokens, args.beams))
                request(), request()  # compiles the pipeline's source length bucket
                fns[f"{key}{PIPELINE_SUFFIX}"] = request
    times = bm.interleave(fns, args.rounds, warmup=0, device=device)
    short_times = {key[: -len(SHORT_SUFFIX)]: times.pop(key) for key in list(times) if key.endswith(SHORT_SUFFIX)}
    pipeline_times = {key[: -len(PIPELINE_SUFFIX)]: times.pop(key) for key in list(times) if key.endswith(PIPELINE_SUFFIX)}
    base = bm.median(times["bart_eager"]) if "bart_eager" in times else None
    for key, t in times.items():
        results[key] = {
            "ms_per_new_token": 1e3 * bm.median(t) / args.new_tokens, "times_s": t,
            "new_tokens_per_s": args.batch * args.new_tokens / bm.median(t),
            "first_call_s": first_call_s[key], "same_tokens_as_eager": same_tokens[key],
            "new_tokens_equal_to_eager": agreement[key],
            "speed_vs_bart_eager": (base / bm.median(t)) if base else None,
        }
        if key in short_times:  # steady state: what one more decoding step costs, per-call work excluded
            results[key]["short_times_s"] = short_times[key]
            results[key]["steady_ms_per_step"] = (
                1e3 * (bm.median(t) - bm.median(short_times[key])) / (args.new_tokens - SHORT)
            )
        if key in pipeline_times:  # one whole request: tokenize, generate, decode
            results[key]["pipeline_ms"] = 1e3 * bm.median(pipeline_times[key])
            results[key]["pipeline_times_s"] = pipeline_times[key]
    results["meta"]["loadavg_end"] = os.getloadavg()
    if pipeline_times:
        results["meta"]["pipeline"] = {"input_words": len(bm.TWENTY_WORDS.split()), "new_tokens": args.new_tokens,
                                       "input_tokens": len(tokenizer(bm.TWENTY_WORDS).input_ids)}
    for key in times:
        r = results[key]
        print(f"{key:24s} {r['ms_per_new_token']:7.2f} ms/step  {r['new_tokens_per_s']:7.0f} tokens/s  "
              f"x{r['speed_vs_bart_eager']:.2f} vs BART eager  "
              f"first call {r['first_call_s']:.1f} s  same tokens: {r['same_tokens_as_eager']} "
              f"({100 * r['new_tokens_equal_to_eager']:.0f}% of new tokens)"
              + (f"  steady state {r['steady_ms_per_step']:.2f} ms/step" if "steady_ms_per_step" in r else "")
              + (f"  pipeline call {r['pipeline_ms']:.0f} ms" if "pipeline_ms" in r else ""))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1, default=float) + "\n")
    return results


if __name__ == "__main__":
    main()
