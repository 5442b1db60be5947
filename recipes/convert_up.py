r"""Convert Universal Proposition Bank CoNLL-U files into the SRL recipe's JSON Lines (one row per predicate).

    git clone https://github.com/UniversalPropositions/UP_English-EWT
    python -m recipes.convert_up UP_English-EWT/en_ewt-up-train.conllu outputs/srl-data/train.jsonl
    python -m recipes.convert_up UP_English-EWT/en_ewt-up-dev.conllu outputs/srl-data/validation.jsonl
    python -m recipes.srl --train_file outputs/srl-data/train.jsonl --validation_file outputs/srl-data/validation.jsonl ...

Universal PropBank marks only the head word of each argument (columns 11+: the predicate's roleset, then one
label column per predicate). The recipe labels spans, so each head is grown into a span over the basic UD
tree, the way the project's own SRL data was made:

1. take the head's subtree;
2. if the predicate lies inside it (relative clauses), remove the branch that leads to the predicate;
3. remove the predicate and the subtrees of the predicate's other argument heads;
4. keep the contiguous run of words around the head;
5. trim punctuation at both ends.

Sentences marked ``# propbank = no-up`` and sentences without predicates give no rows; empty nodes (``8.1``)
and multi-word token lines (``3-4``) are skipped. Each row: ``sent_id``, ``doc_id``, ``tokens``,
``predicate_index`` (0-based), ``predicate`` (roleset), ``tags`` (BIO, ``B-V`` on the predicate) and
``head_tags`` (the original head labels).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

__all__ = ["Word", "read_conllu", "spans_for_predicate", "convert_sentence", "convert_file", "main"]


@dataclass(frozen=True)
class Word:
    index: int  # 0-based
    form: str
    upos: str
    head: int  # 0-based; -1 for the root
    columns: tuple[str, ...]  # column 11 (roleset) and the per-predicate label columns


def read_conllu(path: str | Path) -> Iterator[tuple[dict[str, str], list[Word]]]:
    """``(comments, words)`` per sentence; comments as ``{"sent_id": ..., "newdoc id": ..., "propbank": ...}``."""
    comments: dict[str, str] = {}
    words: list[Word] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if not line.strip():
                if words:
                    yield comments, words
                comments, words = {}, []
                continue
            if line.startswith("#"):
                key, _, value = line[1:].partition("=")
                comments[key.strip()] = value.strip()
                continue
            fields = line.split("\t")
            if "-" in fields[0] or "." in fields[0]:
                continue  # multi-word token range or empty node
            words.append(Word(int(fields[0]) - 1, fields[1], fields[3], int(fields[6]) - 1, tuple(fields[10:])))
    if words:
        yield comments, words


def _subtree(words: list[Word], root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for word in words:
        children.setdefault(word.head, []).append(word.index)
    found, stack = set(), [root]
    while stack:
        node = stack.pop()
        found.add(node)
        stack.extend(children.get(node, []))
    return found


def spans_for_predicate(words: list[Word], predicate: int, heads: dict[int, str]) -> list[tuple[int, int, str]]:
    """``(start, end_inclusive, role)`` for each argument head of ``predicate`` (steps 1-5 of the module doc)."""
    spans = []
    for head, role in sorted(heads.items()):
        members = _subtree(words, head)
        if predicate in members:  # step 2: drop the child branch of `head` that holds the predicate
            for child in (w.index for w in words if w.head == head):
                branch = _subtree(words, child)
                if predicate in branch:
                    members -= branch
        members.discard(predicate)  # step 3
        for other in heads:
            if other != head and other in members:  # another argument nested inside this one keeps its words
                members -= _subtree(words, other)
        start = end = head  # step 4: the contiguous run around the head
        while start - 1 in members:
            start -= 1
        while end + 1 in members:
            end += 1
        while start < head and words[start].upos == "PUNCT":  # step 5
            start += 1
        while end > head and words[end].upos == "PUNCT":
            end -= 1
        spans.append((start, end, role))
    return spans


def convert_sentence(comments: dict[str, str], words: list[Word], doc_id: str) -> list[dict]:
    """One row per predicate of the sentence (none for ``propbank = no-up``)."""
    if comments.get("propbank") == "no-up":
        return []
    predicates = [w.index for w in words if w.columns and w.columns[0] not in ("_", "")]
    rows = []
    for column, predicate in enumerate(predicates, start=1):
        labels = [w.columns[column] if len(w.columns) > column else "_" for w in words]
        heads = {i: label for i, label in enumerate(labels) if label not in ("_", "V", "")}
        tags = ["O"] * len(words)
        for start, end, role in spans_for_predicate(words, predicate, heads):
            if any(tag != "O" for tag in tags[start:end + 1]):
                continue  # an overlap: keep the span found first
            tags[start] = f"B-{role}"
            for i in range(start + 1, end + 1):
                tags[i] = f"I-{role}"
        tags[predicate] = "B-V"
        head_tags = ["V" if i == predicate else (label if label not in ("_", "V", "") else "O")
                     for i, label in enumerate(labels)]
        rows.append({"sent_id": comments.get("sent_id", ""), "doc_id": doc_id, "tokens": [w.form for w in words],
                     "predicate_index": predicate, "predicate": words[predicate].columns[0], "tags": tags,
                     "head_tags": head_tags})
    return rows


def convert_file(source: str | Path, target: str | Path) -> int:
    """Convert one CoNLL-U file; returns the number of rows (predicates) written."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    count, doc_id = 0, ""
    with open(target, "w", encoding="utf-8") as out:
        for comments, words in read_conllu(source):
            doc_id = comments.get("newdoc id", doc_id)
            for row in convert_sentence(comments, words, doc_id):
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
    return count


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m recipes.convert_up", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("source", help="a Universal PropBank .conllu file")
    parser.add_argument("target", help="the .jsonl file to write")
    args = parser.parse_args(argv)
    print(f"{convert_file(args.source, args.target)} predicates written to {args.target}")


if __name__ == "__main__":
    main()
