"""SRL span F1 of one trained model, decoded two ways from the same logits: per-word argmax and BIO-constrained
Viterbi (``bio_viterbi``, what the metric, the predictions file and the pipeline use since session 13).

    python bench/results/explore/srl_viterbi.py FOLDER [--validation_file ../shared/data/srl/validation.jsonl]

Prints one JSON line: both F1 figures, how many predicates changed, how many argmax sequences were invalid BIO.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from recipes.core.metrics import bio_viterbi, load_metric, log_softmax  # noqa: E402
from recipes.core.srl_utils import encode_srl_words  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--validation_file", default=str(Path(__file__).resolve().parents[4] / "shared/data/srl/validation.jsonl"))
    args = parser.parse_args()
    import modeling  # noqa: F401  (registers the Forge models with the Auto classes)
    import tokenization  # noqa: F401  (and the Forge tokenizers)
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    model = AutoModelForTokenClassification.from_pretrained(args.folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.folder)
    labels = [model.config.id2label[i] for i in range(len(model.config.id2label))]
    markers = tuple(tokenizer.convert_tokens_to_ids(["<pred>", "</pred>"]))
    rows = [json.loads(line) for line in open(args.validation_file, encoding="utf-8") if line.strip()]
    argmax_tags, viterbi_tags, references, invalid = [], [], [], 0
    with torch.inference_mode():
        for row in rows:
            ids, word_ids, _ = encode_srl_words(tokenizer, row["tokens"], row["predicate_index"], markers, 512)
            logits = model(input_ids=torch.tensor([ids])).logits[0].float().numpy()
            firsts = {}
            for position, word in enumerate(word_ids):
                if word is not None and word not in firsts:
                    firsts[word] = position
            scores = log_softmax(logits[[firsts[w] for w in range(len(row["tokens"]))]])
            greedy = [labels[i] for i in scores.argmax(-1)]
            best = [labels[i] for i in bio_viterbi(scores, labels)]
            invalid += greedy != best
            argmax_tags.append(greedy)
            viterbi_tags.append(best)
            references.append(row["tags"])
    metric = load_metric("seqeval")
    a = metric.compute(predictions=argmax_tags, references=references)
    v = metric.compute(predictions=viterbi_tags, references=references)
    print(json.dumps({"folder": args.folder, "predicates": len(rows), "changed_by_viterbi": invalid,
                      "argmax": {k: round(a[k], 2) for k in ("precision", "recall", "f1")},
                      "viterbi": {k: round(v[k], 2) for k in ("precision", "recall", "f1")}}))


if __name__ == "__main__":
    main()
