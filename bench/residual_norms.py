"""The encoder's residual stream, layer by layer: why a pretrained start can fine-tune worse than random weights.

    python bench/residual_norms.py outputs/quality_pt/pretrained-forge outputs/quality_pt/srl-forge-scratch-seed42 \
        --random forge-small --json bench/results/residual_norms.json

For each Forge folder (and, with ``--random PRESET``, a randomly initialised model of that preset) this runs the
encoder on a few validation sentences and prints the mean L2 norm of the hidden state after the embeddings, after
each layer but the last, and at the encoder's output (through the final norm of a pre-norm stack), plus the
dimensions with the largest mean magnitude after the first layer and how constant they are across tokens.

A pre-norm stack whose stream grows by one or two orders of magnitude in a few dimensions that hold nearly the same
value for every token ("massive activations", Sun et al. 2024, arXiv:2402.17762) hands every later layer a layer
norm dominated by those dimensions: the token-specific part of the input is scaled down by the same factor, and
fine-tuning moves it slowly.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python bench/residual_norms.py`: the checkout
import modeling  # noqa: E402,F401 - registers Forge with the Auto classes
import tokenization  # noqa: E402,F401

SENTENCES = [
    "The committee approved the plan on Monday after a long debate about the budget .",
    "A gripping , funny and ultimately moving film about growing up .",
    "Two men are standing in front of a building while a dog runs past them .",
]


def stream_norms(model: torch.nn.Module, batch: dict) -> dict:
    """Mean per-token L2 norm of each encoder hidden state, and the largest dimensions after layer 1."""
    encoder = model.get_encoder()
    with torch.no_grad():
        out = encoder(**batch, output_hidden_states=True, return_dict=True)
    mask = batch["attention_mask"].bool()
    # transformers' convention: the embeddings, the output of each layer but the last, then the stack's output
    # (the last layer's, through the final norm of a pre-norm stack)
    states = list(out.hidden_states)
    norms = [round(h[mask].norm(dim=-1).mean().item(), 1) for h in states]
    first = states[1][mask]  # (tokens, d_model) after layer 1
    magnitude = first.abs().mean(0)
    top = magnitude.topk(5).indices.tolist()
    return {
        "norms": norms,
        "top_dims_after_layer_1": top,
        "top_dims_mean_abs": [round(magnitude[i].item(), 1) for i in top],
        # a massive dimension is nearly constant over tokens: std across tokens relative to its mean magnitude
        "top_dims_relative_std": [round((first[:, i].std() / magnitude[i]).item(), 3) for i in top],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", help="Forge model folders (any head; the encoder is read)")
    parser.add_argument("--random", default=None, help="also a randomly initialised model of this preset")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.folders[0])
    batch = dict(tokenizer(SENTENCES, return_tensors="pt", padding=True))
    batch.pop("token_type_ids", None)
    torch.manual_seed(0)
    models = [(folder, AutoModel.from_pretrained(folder).eval()) for folder in args.folders]
    if args.random:
        config = modeling.ForgeConfig.from_pretrained(args.random, vocab_size=len(tokenizer))
        models.append((f"random {args.random}", modeling.ForgeModel(config).eval()))
    results = {}
    for name, model in models:
        results[name] = stream_norms(model, batch)
        row = results[name]
        print(f"{name}\n  norm after the embeddings, layers 1..N-1, and the encoder's output: {row['norms']}\n"
              f"  largest dims after layer 1: {row['top_dims_after_layer_1']} mean |x| {row['top_dims_mean_abs']} "
              f"std/mean over tokens {row['top_dims_relative_std']}")
    if args.json:
        record = {"command": " ".join(["python", "bench/residual_norms.py", *(argv if argv is not None else sys.argv[1:])]),
                  "sentences": SENTENCES, "models": results}
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
