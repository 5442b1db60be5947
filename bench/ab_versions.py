"""Forge now vs Forge at an older commit, in ONE process: did a change make anything slower?

Two bench_model.py runs minutes apart differ by up to 16% on this shared-CPU machine (bench/README.md), more than
most code changes move. So this script imports the older ``modeling/`` from git (``git archive REF modeling``, into a
temporary package of its own, never touching the checkout) next to the current one, gives both models the same
weights, and interleaves every measurement (A B, B A, ...) the way bench_model.py interleaves Forge and BART::

    python bench/ab_versions.py --ref 274144a --rounds 7 --json bench/results/conformance/ab_274144a.json

Measured per version: training step (forward with labels, backward, AdamW), greedy and 4-beam generation (batch 16),
greedy generation at batch 1, and the encoder-only forward. Reported: median seconds and new/old ratio of the
rates (above 1 = the current code is faster). Both versions must produce the same greedy tokens, which is checked.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import torch
from transformers import GenerationConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as `python bench/ab_versions.py`: the checkout
sys.path.insert(0, str(ROOT / "bench"))
import bench_model as bm  # noqa: E402 - the same timing helpers as the Forge-vs-BART bench
from modeling import ForgeConfig, ForgeForConditionalGeneration  # noqa: E402


def import_modeling_at(ref: str, into: Path):
    """``modeling/`` as it was at git ``ref``, imported as package ``forge_at_<sha>``; returns its modeling_forge."""
    sha = subprocess.run(["git", "rev-parse", "--short", ref], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout.strip()
    archive = subprocess.run(["git", "archive", "--format=tar", sha, "modeling"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    target = into / f"forge_at_{sha}"
    with tempfile.TemporaryFile() as handle:
        handle.write(archive)
        handle.seek(0)
        with tarfile.open(fileobj=handle) as tar:
            tar.extractall(into, filter="data")
    (into / "modeling").rename(target)
    # The package's __init__ registers Forge with the Auto classes: the old one must not replace the current
    # registration, and only the model classes are needed.
    (target / "__init__.py").write_text("")
    sys.path.insert(0, str(into))
    return sha, importlib.import_module(f"{target.name}.modeling_forge")


def build_versions(old_module, preset: str, attn: str) -> dict[str, torch.nn.Module]:
    """The current and the old ForgeForConditionalGeneration, same config and the same weights."""
    config = bm.forge_config(preset, attn, None)
    torch.manual_seed(0)
    new = ForgeForConditionalGeneration(config)
    old_config = old_module.ForgeConfig.from_dict(config.to_dict())
    old_config._attn_implementation = attn
    old = old_module.ForgeForConditionalGeneration(old_config)
    state = new.state_dict()
    wanted = old.state_dict().keys()
    # Keys only the current version names are fine when they alias a tensor the old one loads (the current code
    # registers the shared embedding under each stack as well; the old one kept it out of named_modules).
    shared = {state[k].data_ptr() for k in wanted if k in state}
    extra = [k for k in state if k not in wanted and state[k].data_ptr() not in shared]
    missing, unexpected = old.load_state_dict({k: v for k, v in state.items() if k in wanted}, strict=False)
    unexpected = list(unexpected) + extra
    if missing or unexpected:
        raise SystemExit(f"the two versions name their weights differently (missing {missing}, unexpected "
                         f"{unexpected}): this script compares versions with the same parameters only")
    for model in (new, old):
        model.generation_config = GenerationConfig(
            decoder_start_token_id=config.decoder_start_token_id, bos_token_id=config.bos_token_id,
            eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id,
        )
    return {"new": new, "old": old}


def entry(times: dict[str, list[float]], units: float, unit: str) -> dict:
    result = {name: {"median_s": bm.median(t), "times_s": t, f"{unit}_per_s": units / bm.median(t)}
              for name, t in times.items()}
    result["ratio_new_over_old"] = result["new"][f"{unit}_per_s"] / result["old"][f"{unit}_per_s"]
    print(f"[ab] {unit}/s: new {result['new'][f'{unit}_per_s']:,.1f}, old {result['old'][f'{unit}_per_s']:,.1f}, "
          f"new/old {result['ratio_new_over_old']:.3f}", file=sys.stderr, flush=True)
    return result


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        sha, old_module = import_modeling_at(args.ref, Path(tmp))
        models = build_versions(old_module, args.preset, args.attn)
        vocab = models["new"].config.vocab_size
        results: dict = {"meta": {
            "ref": sha, "head": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                               text=True).stdout.strip(),
            "preset": args.preset, "attn": args.attn, "threads": args.threads, "rounds": args.rounds,
            "torch": torch.__version__, "loadavg_start": os.getloadavg(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }}

        # Same tokens first: a speed comparison of two versions that compute different things means nothing.
        batch = bm.make_batch(vocab, args.gen_batch, args.src_len, args.tgt_len, device)
        with torch.inference_mode():
            outs = {name: m.eval().generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                            max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                            do_sample=False) for name, m in models.items()}
        results["same_greedy_tokens"] = bool(torch.equal(outs["new"], outs["old"]))
        if not results["same_greedy_tokens"]:
            raise SystemExit("the two versions generate different tokens from the same weights: not comparable")

        train_batch = bm.make_batch(vocab, args.batch, args.src_len, args.tgt_len, device)
        optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True) for name, m in models.items()}
        fns = {name: bm.train_step_fn(m, optimizers[name], train_batch, device, "fp32") for name, m in models.items()}
        results["train_tokens"] = entry(bm.interleave(fns, args.rounds, args.warmup, device),
                                        args.batch * (args.src_len + args.tgt_len), "tokens")
        for label, rows, beams in (("greedy", args.gen_batch, 1), ("beam4", args.gen_batch, 4), ("greedy_batch1", 1, 1)):
            gen_batch = bm.make_batch(vocab, rows, args.src_len, args.tgt_len, device)
            fns = {name: bm.generate_fn(m, gen_batch, beams, args.new_tokens, device, "fp32")
                   for name, m in models.items()}
            results[label] = entry(bm.interleave(fns, args.rounds, args.warmup, device), rows * args.new_tokens,
                                   f"{label}_new_tokens")
        fns = {name: bm.encoder_forward_fn(m.get_encoder(), batch, device, "fp32") for name, m in models.items()}
        results["encoder_tokens"] = entry(bm.interleave(fns, args.rounds, args.warmup, device),
                                          args.gen_batch * args.src_len, "encoder_tokens")
        results["meta"]["loadavg_end"] = os.getloadavg()
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", required=True, help="the older commit (any git revision)")
    parser.add_argument("--preset", default="forge-small")
    parser.add_argument("--attn", default="sdpa", choices=("sdpa", "eager"))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--gen-batch", type=int, default=16)
    parser.add_argument("--src-len", type=int, default=128)
    parser.add_argument("--tgt-len", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--quick", action="store_true", help="forge-tiny shape, 1 round: checks the code path")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.preset, args.batch, args.gen_batch, args.src_len, args.tgt_len = "forge-tiny", 2, 2, 16, 8
        args.new_tokens, args.rounds, args.warmup = 4, 1, 0
    results = run(args)
    summary = {k: round(v["ratio_new_over_old"], 3) for k, v in results.items() if isinstance(v, dict) and
               "ratio_new_over_old" in v}
    results["summary_new_over_old"] = summary
    print(json.dumps({"ref": results["meta"]["ref"], "head": results["meta"]["head"], **summary}))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1, default=float))
    return results


if __name__ == "__main__":
    main()
