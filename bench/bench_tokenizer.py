"""Benchmark the Forge tokenizers: training time, encode throughput, compression.

    nice python bench/bench_tokenizer.py [--data_dir ../shared/data] [--output outputs/bench_tokenizer.json]

Measures, and prints as a table (and writes as JSON):

1. Time to train a 16k byte-level BPE vocabulary on ``pretrain/train.jsonl`` (~40 MB of English Wikipedia).
2. Encode throughput (MB of UTF-8 per second, batch ``__call__`` without special tokens) on English validation text of
   ForgeTokenizerFast, ForgeTokenizer (pure Python; on a smaller slice) and ``GPT2TokenizerFast`` built from the
   same vocab.json + merges.txt. GPT-2's pre-tokenizer is ``ByteLevel(use_regex=True)`` with the GPT-2 regex
   (``\\p{L}`` classes, no CJK rule), not Forge's explicit-range split, so its ids can differ on some words; the
   share of identical documents is reported.
3. Tokens per character on pretrain_zh validation (vocabulary trained on pretrain_zh train) and tokens per
   whitespace-separated word on English validation (the 16k English vocabulary).

Timings depend on the machine and its load (the numbers in the README were taken on a shared 2-core machine);
the Rust tokenizers use all cores unless ``RAYON_NUM_THREADS`` is set.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from transformers import GPT2TokenizerFast  # noqa: E402

from tokenization import ForgeTokenizer, ForgeTokenizerFast  # noqa: E402
from tokenization.tokenization_forge import load_merges  # noqa: E402
from tokenization.train import save_tokenizer, train_tokenizer  # noqa: E402


def read_texts(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line)["text"] for line in handle if line.strip()]


def throughput(encode, texts: list[str], repeats: int = 3) -> tuple[float, list[list[int]]]:
    """Best-of-``repeats`` MB/s of ``encode(texts)`` (a batch call returning input_ids)."""
    size_mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    best, ids = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        ids = encode(texts)
        best = min(best, time.perf_counter() - start)
    return size_mb / best, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--vocab_size", type=int, default=16384)
    parser.add_argument("--slow_bytes", type=int, default=300_000, help="English bytes encoded by the slow class")
    parser.add_argument("--output", default=str(REPO / "outputs" / "bench_tokenizer.json"))
    args = parser.parse_args()
    data = Path(args.data_dir)
    results: dict = {"command": "nice python bench/bench_tokenizer.py", "machine": platform.platform(),
                     "cpus": os.cpu_count(), "rayon_threads": os.environ.get("RAYON_NUM_THREADS", "all"),
                     "vocab_size": args.vocab_size}

    # 1. training time on ~40 MB of English
    en_train = read_texts(data / "pretrain" / "train.jsonl")
    results["en_train_mb"] = round(sum(len(t.encode("utf-8")) for t in en_train) / 1e6, 1)
    start = time.perf_counter()
    en_tok = train_tokenizer(en_train, vocab_size=args.vocab_size, show_progress=False)
    results["train_seconds_en_16k"] = round(time.perf_counter() - start, 1)
    del en_train

    with tempfile.TemporaryDirectory() as folder:
        save_tokenizer(en_tok, folder)
        fast = ForgeTokenizerFast.from_pretrained(folder)
        slow = ForgeTokenizer.from_pretrained(folder)
        with open(os.path.join(folder, "vocab.json"), encoding="utf-8") as handle:
            vocab = json.load(handle)
        merges = load_merges(os.path.join(folder, "merges.txt"))
    gpt2 = GPT2TokenizerFast(vocab=vocab, merges=merges, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                             pad_token="<pad>")

    # 2. throughput on English validation
    en_val = read_texts(data / "pretrain" / "validation.jsonl")
    results["en_validation_mb"] = round(sum(len(t.encode("utf-8")) for t in en_val) / 1e6, 2)
    fast_mbs, fast_ids = throughput(lambda t: fast(t, add_special_tokens=False)["input_ids"], en_val)
    gpt2_mbs, gpt2_ids = throughput(lambda t: gpt2(t, add_special_tokens=False)["input_ids"], en_val)
    slow_texts, size = [], 0
    for text in en_val:
        slow_texts.append(text)
        size += len(text.encode("utf-8"))
        if size >= args.slow_bytes:
            break
    slow_mbs, slow_ids = throughput(lambda t: slow(t, add_special_tokens=False)["input_ids"], slow_texts, repeats=1)
    results["encode_mb_per_s"] = {"ForgeTokenizerFast": round(fast_mbs, 2), "GPT2TokenizerFast(same vocab+merges)":
                                  round(gpt2_mbs, 2), "ForgeTokenizer (pure Python)": round(slow_mbs, 3)}
    results["fast_vs_gpt2_speed_ratio"] = round(fast_mbs / gpt2_mbs, 3)
    results["slow_bytes_measured"] = size
    results["slow_equals_fast_on_slice"] = slow_ids == fast_ids[: len(slow_ids)]
    results["gpt2_identical_docs_share"] = round(sum(a == b for a, b in zip(fast_ids, gpt2_ids)) / len(en_val), 3)
    results["gpt2_vs_forge_token_count_ratio"] = round(sum(map(len, gpt2_ids)) / sum(map(len, fast_ids)), 4)

    # 3. compression
    n_tokens = sum(map(len, fast_ids))
    n_words = sum(len(t.split()) for t in en_val)
    results["en_tokens_per_word"] = round(n_tokens / n_words, 3)
    results["en_tokens_per_char"] = round(n_tokens / sum(map(len, en_val)), 3)
    zh_train = read_texts(data / "pretrain_zh" / "train.jsonl")
    start = time.perf_counter()
    zh_tok = train_tokenizer(zh_train, vocab_size=args.vocab_size, show_progress=False)
    results["train_seconds_zh_16k"] = round(time.perf_counter() - start, 1)
    zh_val = read_texts(data / "pretrain_zh" / "validation.jsonl")
    zh_ids = zh_tok(zh_val, add_special_tokens=False)["input_ids"]
    results["zh_tokens_per_char"] = round(sum(map(len, zh_ids)) / sum(map(len, zh_val)), 3)
    results["zh_tokens_per_char_with_english_vocab"] = round(
        sum(map(len, fast(zh_val, add_special_tokens=False)["input_ids"])) / sum(map(len, zh_val)), 3)

    rows = [
        ("train 16k vocab on pretrain/train (%.1f MB)" % results["en_train_mb"], f"{results['train_seconds_en_16k']} s"),
        ("train 16k vocab on pretrain_zh/train", f"{results['train_seconds_zh_16k']} s"),
        *[(f"encode MB/s: {name}", value) for name, value in results["encode_mb_per_s"].items()],
        ("fast / GPT2TokenizerFast speed", results["fast_vs_gpt2_speed_ratio"]),
        ("GPT2TokenizerFast ids identical (share of docs)", results["gpt2_identical_docs_share"]),
        ("slow ids == fast ids on the slow slice", results["slow_equals_fast_on_slice"]),
        ("English validation: tokens per word", results["en_tokens_per_word"]),
        ("English validation: tokens per char", results["en_tokens_per_char"]),
        ("pretrain_zh validation: tokens per char (zh vocab)", results["zh_tokens_per_char"]),
        ("pretrain_zh validation: tokens per char (en vocab)", results["zh_tokens_per_char_with_english_vocab"]),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'measure':<{width}}  value")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
