"""What int8 weights cost a trained translation model, and what they buy per request (issue 19).

Loads one trained Forge translation folder three ways: as saved (fp32), ``dtype=torch.bfloat16``, and
``dtype=torch.bfloat16, quantization_config=TorchAoConfig(Int8WeightOnlyConfig())`` (torchao: every linear layer but
the tied ``lm_head`` holds int8 weights with a bf16 scale per row). For each it reports

- sacreBLEU / chrF on the whole validation file with the folder's own generation settings (the recipe's beam
  search, batch ``--batch_size``; transformers' loop), and the share of hypotheses equal to fp32's;
- one request at a time (batch 1, greedy, ``--requests`` sources): ms per generated token with transformers' loop
  and with ``compiled_decoding=True``, interleaved over ``--rounds`` rounds, and the BLEU of those greedy outputs.

The model is trained, so this says what quantization does to real translations, which random-weight timing
benches (``bench/decode_latency.py``) cannot::

    python bench/int8_quality.py --model outputs/s23_mt_ft_lr5e-4/translation-forge-pretrained-seed42 \\
        --validation_file ../shared/data/translation/validation.jsonl --json bench/results/int8_quality_translation.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import sacrebleu
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, TorchAoConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python bench/int8_quality.py`: the checkout
import modeling  # noqa: E402, F401 - registers Forge with the Auto classes
import tokenization  # noqa: E402, F401

PRECISIONS = ("fp32", "bf16", "int8")


def load(folder: str, precision: str):
    kwargs = {}
    if precision != "fp32":
        kwargs["dtype"] = torch.bfloat16
    if precision == "int8":
        from torchao.quantization import Int8WeightOnlyConfig

        kwargs["quantization_config"] = TorchAoConfig(Int8WeightOnlyConfig())
    return AutoModelForSeq2SeqLM.from_pretrained(folder, **kwargs).eval()


def translate(model, tokenizer, sources: list[str], batch_size: int, **generate_kwargs) -> tuple[list[str], int]:
    """Hypotheses and the number of generated tokens (special tokens and padding excluded)."""
    hypotheses, generated = [], 0
    special = torch.tensor(tokenizer.all_special_ids)
    for start in range(0, len(sources), batch_size):
        batch = tokenizer(sources[start : start + batch_size], return_tensors="pt", padding=True, truncation=True,
                          max_length=64)
        with torch.inference_mode():
            out = model.generate(**batch, **generate_kwargs)
        hypotheses += tokenizer.batch_decode(out, skip_special_tokens=True)
        generated += int((~torch.isin(out[:, 1:], special)).sum())
    return [h.strip() for h in hypotheses], generated


def scores(hypotheses: list[str], references: list[str]) -> dict:
    return {
        "sacrebleu": sacrebleu.corpus_bleu(hypotheses, [references]).score,
        "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a trained Forge translation folder")
    parser.add_argument("--validation_file", required=True)
    parser.add_argument("--source_lang", default="de")
    parser.add_argument("--target_lang", default="en")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--requests", type=int, default=100, help="sources translated one at a time, greedy")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*_stable_hash_for_caching.*")

    rows = [json.loads(line) for line in Path(args.validation_file).read_text().splitlines() if line.strip()]
    sources = [row[args.source_lang] for row in rows]
    references = [row[args.target_lang] for row in rows]
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    results: dict = {"meta": {
        "model": args.model, "validation_file": args.validation_file, "pairs": len(rows),
        "batch_size": args.batch_size, "requests": args.requests, "rounds": args.rounds,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "loadavg_start": os.getloadavg(),
    }}
    models = {precision: load(args.model, precision) for precision in PRECISIONS}

    # 1. the whole validation file with the folder's generation settings (beam search from generation_config.json)
    reference_hypotheses = None
    for precision, model in models.items():
        start = time.perf_counter()
        hypotheses, generated = translate(model, tokenizer, sources, args.batch_size, max_new_tokens=args.max_new_tokens)
        seconds = time.perf_counter() - start
        reference_hypotheses = reference_hypotheses or hypotheses
        same = sum(h == r for h, r in zip(hypotheses, reference_hypotheses)) / len(hypotheses)
        results[f"{precision}_beam"] = {**scores(hypotheses, references), "seconds": seconds,
                                        "generated_tokens": generated, "same_as_fp32": same,
                                        "num_beams": model.generation_config.num_beams}
        print(f"{precision:5s} beam {model.generation_config.num_beams}: sacreBLEU {results[f'{precision}_beam']['sacrebleu']:.2f} "
              f"chrF {results[f'{precision}_beam']['chrf']:.2f}, {seconds:.0f} s, {100 * same:.1f}% of hypotheses = fp32's",
              flush=True)

    # 2. one request at a time, greedy: transformers' loop and compiled decoding, interleaved by round
    requests = sources[: args.requests]
    variants = {f"{p}_{loop}": (models[p], loop == "compiled") for p in PRECISIONS for loop in ("eager", "compiled")}
    greedy = dict(num_beams=1, do_sample=False, max_new_tokens=args.max_new_tokens)
    for model, compiled in variants.values():  # compile every bucket these requests use before timing
        translate(model, tokenizer, requests, 1, compiled_decoding=compiled, **greedy)
    times: dict[str, list[float]] = {name: [] for name in variants}
    outputs: dict[str, tuple[list[str], int]] = {}
    for round_ in range(args.rounds):
        order = list(variants) if round_ % 2 == 0 else list(reversed(variants))
        for name in order:
            model, compiled = variants[name]
            start = time.perf_counter()
            outputs[name] = translate(model, tokenizer, requests, 1, compiled_decoding=compiled, **greedy)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["fp32_eager"])
    for name in variants:
        hypotheses, generated = outputs[name]
        median = statistics.median(times[name])
        results[f"{name}_greedy_batch1"] = {
            **scores(hypotheses, references[: args.requests]), "times_s": times[name],
            "ms_per_generated_token": 1e3 * median / generated, "ms_per_request": 1e3 * median / len(requests),
            "speed_vs_fp32_eager": base / median, "generated_tokens": generated,
            "same_as_fp32_eager": sum(h == r for h, r in zip(hypotheses, outputs["fp32_eager"][0])) / len(hypotheses),
        }
        r = results[f"{name}_greedy_batch1"]
        print(f"{name:14s} greedy batch 1: {r['ms_per_generated_token']:.2f} ms/token, {r['ms_per_request']:.0f} ms/request, "
              f"x{r['speed_vs_fp32_eager']:.2f}, sacreBLEU {r['sacrebleu']:.2f}, "
              f"{100 * r['same_as_fp32_eager']:.0f}% = fp32 eager", flush=True)
    results["meta"]["loadavg_end"] = os.getloadavg()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
