"""How much a pretrained encoder's sentence features say about a classification task, before any fine-tuning.

    python bench/feature_probe.py --base outputs/pt60_lr1e3/pretrained-forge --data-dir ../shared/data/sentiment

For every encoder layer (``output_hidden_states=True``: the embeddings, then each layer's output, the last one after
the final norm) it mean-pools the states over each sentence's real tokens and reports: the mean vector norm, the
largest absolute feature, the mean pairwise cosine between validation sentences (near 1 = every sentence gets nearly
the same vector), and the validation accuracy of a logistic regression (scikit-learn) trained on the standardised
frozen features of the first ``--train-rows`` training sentences: a linear probe. LoRA and DP-SGD change the encoder
little, so a low probe accuracy predicts that they will learn slowly from this base (README, "LoRA").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def rows(path: Path, limit: int) -> list[dict]:
    out = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if len(out) >= limit:
                break
            out.append(json.loads(line))
    return out


def pooled_layers(model, tokenizer, texts: list[str], max_length: int, batch: int = 128) -> list[np.ndarray]:
    """Mean over real tokens of every hidden state, one (sentences, d_model) array per layer."""
    per_layer: list[list[np.ndarray]] = []
    for start in range(0, len(texts), batch):
        enc = tokenizer(texts[start : start + batch], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
        with torch.inference_mode():
            states = model.get_encoder()(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                         output_hidden_states=True).hidden_states
        weights = enc["attention_mask"].unsqueeze(-1).float()
        for i, h in enumerate(states):
            if len(per_layer) <= i:
                per_layer.append([])
            per_layer[i].append(((h * weights).sum(1) / weights.sum(1)).numpy())
    return [np.concatenate(parts) for parts in per_layer]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="a Forge folder (any head; its encoder is probed)")
    parser.add_argument("--data-dir", required=True, help="train.jsonl and validation.jsonl with text and label")
    parser.add_argument("--train-rows", type=int, default=3000)
    parser.add_argument("--max-length", type=int, default=64)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModel, AutoTokenizer

    import modeling  # noqa: F401  (registers Forge's models with the Auto classes)
    import tokenization  # noqa: F401  (and its tokenizers)

    tokenizer = AutoTokenizer.from_pretrained(args.base)
    model = AutoModel.from_pretrained(args.base).eval()
    train = rows(Path(args.data_dir) / "train.jsonl", args.train_rows)
    valid = rows(Path(args.data_dir) / "validation.jsonl", 10**9)
    x_train = pooled_layers(model, tokenizer, [r["text"] for r in train], args.max_length)
    x_valid = pooled_layers(model, tokenizer, [r["text"] for r in valid], args.max_length)
    y_train = np.array([r["label"] for r in train])
    y_valid = np.array([r["label"] for r in valid])
    results = []
    for layer, (xt, xv) in enumerate(zip(x_train, x_valid)):
        unit = xv / np.linalg.norm(xv, axis=1, keepdims=True)
        n = len(unit)
        cosine = float(((unit @ unit.T).sum() - n) / (n * (n - 1)))
        mean, std = xt.mean(0), xt.std(0) + 1e-6
        probe = LogisticRegression(max_iter=3000).fit((xt - mean) / std, y_train)
        row = {"hidden_states": layer, "mean_norm": float(np.linalg.norm(xv, axis=1).mean()),
               "max_abs": float(np.abs(xv).max()), "mean_pairwise_cosine": cosine,
               "probe_accuracy": 100 * float(probe.score((xv - mean) / std, y_valid))}
        results.append(row)
        print(f"hidden_states[{layer}]: mean norm {row['mean_norm']:7.1f}  max |x| {row['max_abs']:7.1f}  "
              f"mean cosine {cosine:.4f}  linear probe accuracy {row['probe_accuracy']:.1f}")
    print(json.dumps({"base": args.base, "train_rows": len(train), "validation_rows": len(valid), "layers": results}))
    return results


if __name__ == "__main__":
    main()
