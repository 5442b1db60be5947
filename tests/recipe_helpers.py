"""Shared helpers for the recipe tests (tests/test_recipes*.py, QA/SRL/data tests): a small Forge tokenizer
trained on the embedded sample data, and paths to that data."""

from __future__ import annotations

import json
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT / "recipes" / "sample_data"


def sample_texts() -> list[str]:
    """Text from every sample task, so the tokenizer knows all their words (English and German)."""
    texts: list[str] = []
    for path in sorted(SAMPLE_DIR.glob("*/train.jsonl")):
        if path.parent.name == "pretrain_zh":
            continue
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                for key in ("text", "de", "en", "document", "summary", "context", "question"):
                    if isinstance(row.get(key), str):
                        texts.append(row[key])
                if isinstance(row.get("tokens"), list):
                    texts.append(" ".join(row["tokens"]))
    return texts


def train_small_tokenizer(vocab_size: int = 1200):
    """A ForgeTokenizerFast with ``vocab_size`` entries (8 sentinels), trained in a second or two."""
    from tokenization import train_tokenizer

    return train_tokenizer(sample_texts(), vocab_size=vocab_size, num_sentinels=8, show_progress=False)


def write_jsonl(path: Path, rows: list) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
