"""Scrub personal data from text corpora before a tokenizer or a model sees it.

E-mail addresses, phone numbers, URLs, credit-card numbers, ID numbers (IBAN, US SSN, Chinese resident ID) and IP
addresses are replaced by typed placeholders (``<EMAIL>``, ``<PHONE>``, ``<URL>``, ``<CREDIT_CARD>``, ``<ID>``,
``<IP>``); everything else, Chinese text included, passes through byte for byte. A :class:`PiiReport` counts the
replacements by type, never the values.

Detection is Microsoft Presidio's analyzer (``presidio-analyzer``, maintained, offline): its pattern recognizers
with checksum validation (Luhn for cards, IBAN mod-97, SSN rules) and Google's ``phonenumbers`` for phones. It
normally loads a spaCy model for names, which would be a download; Forge gives it a blank spaCy pipeline instead,
so names are NOT detected (no offline name model installs from PyPI). bench/pii_compare.py compares it with
scrubadub and datafog on bench/pii_sample.jsonl; the README has the table and the reasons for the choice.

Three additions to Presidio, each for a measured miss on that sample:
- phone regions: Presidio checks US, GB, DE, FR, IL, IN, CA, BR by default; CN is added and DE removed (with DE,
  years such as 1691 are German phone numbers);
- a Chinese resident-ID recognizer (18 characters, validated with python-stdnum's ``cn.ric``);
- CJK boundaries: Presidio's patterns use ``\\b``, and a CJK character counts as a word character, so
  ``请联系li.na@example.com获取`` hides the address. The text is analysed with a space between CJK and ASCII
  letters/digits, and the spans are mapped back to the original, which is what gets edited.

Command line (scrub a file before anything else reads it)::

    python -m recipes.privacy.pii --input corpus.jsonl --output corpus.scrubbed.jsonl [--text_column text]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

logger = logging.getLogger(__name__)

REPORT_NAME = "pii_report.json"
# Presidio entity -> Forge placeholder type.
ENTITY_TYPES: dict[str, str] = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "URL": "URL",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "ID",
    "US_SSN": "ID",
    "CN_RESIDENT_ID": "ID",
    "IP_ADDRESS": "IP",
}
PLACEHOLDER_TYPES = tuple(dict.fromkeys(ENTITY_TYPES.values()))
# Presidio's default regions, plus CN, minus DE: German numbers have no fixed length, and with DE every
# four-digit year ("from 1691 to 1694") and many decimals are valid phone numbers (measured on ../shared/data
# pretrain text). German numbers in international form (+49 ...) are still found, as are all "+" numbers.
PHONE_REGIONS = ("US", "GB", "FR", "IL", "IN", "CA", "BR", "CN")
# Presidio's URL recognizer scores bare domains 0.5 and phone numbers 0.4; below 0.3 are weak guesses (for
# instance any 6-digit number as a US driving licence, a type not scrubbed here anyway).
SCORE_THRESHOLD = 0.3

_CJK = r"\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef"
_CJK_ASCII_BOUNDARY = re.compile(rf"(?<=[{_CJK}])(?=[A-Za-z0-9+])|(?<=[A-Za-z0-9])(?=[{_CJK}])")


def placeholder(kind: str) -> str:
    return f"<{kind}>"


@lru_cache(maxsize=1)
def _presidio_analyzer() -> Any:
    """Presidio's AnalyzerEngine with a blank spaCy pipeline (no model download) and Forge's additions."""
    # Presidio's e-mail validation asks tldextract for the public-suffix list, which it would fetch from the
    # network; an empty URL list makes it use the snapshot bundled with the package.
    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    import spacy
    from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer
    from stdnum.cn import ric

    class BlankSpacyNlpEngine(SpacyNlpEngine):
        """Tokenisation only: the pattern recognizers need no statistical model."""

        def load(self) -> None:
            self.nlp = {"en": spacy.blank("en")}

    class ChineseResidentIdRecognizer(PatternRecognizer):
        def validate_result(self, pattern_text: str) -> Optional[bool]:
            return bool(ric.is_valid(pattern_text))

    engine = BlankSpacyNlpEngine(models=[{"lang_code": "en", "model_name": "blank"}])
    engine.load()
    registry = RecognizerRegistry(supported_languages=["en"])
    presidio_logger = logging.getLogger("presidio-analyzer")
    level = presidio_logger.level
    presidio_logger.setLevel(logging.ERROR)  # one warning per non-English recognizer it skips: noise
    try:
        registry.load_predefined_recognizers(languages=["en"], nlp_engine=engine)
    finally:
        presidio_logger.setLevel(level)
    registry.remove_recognizer("PhoneRecognizer")
    registry.add_recognizer(PhoneRecognizer(supported_regions=PHONE_REGIONS))
    registry.add_recognizer(ChineseResidentIdRecognizer(
        supported_entity="CN_RESIDENT_ID", name="ChineseResidentIdRecognizer",
        patterns=[Pattern("cn_resident_id", r"\b\d{17}[\dX]\b", 0.5)],
    ))
    return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])


@dataclass
class PiiReport:
    """How many values of each type were replaced, in how many texts. Never holds the values themselves."""

    texts: int = 0
    texts_changed: int = 0
    replaced: Counter = field(default_factory=Counter)

    def add(self, counts: dict[str, int]) -> None:
        self.texts += 1
        if any(counts.values()):
            self.texts_changed += 1
        self.replaced.update({k: v for k, v in counts.items() if v})

    def merge(self, other: "PiiReport") -> None:
        self.texts += other.texts
        self.texts_changed += other.texts_changed
        self.replaced.update(other.replaced)

    def to_dict(self) -> dict[str, Any]:
        return {
            "detector": f"presidio-analyzer {_version('presidio-analyzer')} (pattern recognizers, blank spaCy; no names)",
            "texts": self.texts,
            "texts_changed": self.texts_changed,
            "replaced": {kind: int(self.replaced.get(kind, 0)) for kind in PLACEHOLDER_TYPES},
        }

    def save(self, folder: str | os.PathLike, name: str = REPORT_NAME) -> Path:
        path = Path(folder) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


class PiiScrubber:
    """Find and replace personal data in text (see the module docstring for what is and is not detected)."""

    def __init__(self, score_threshold: float = SCORE_THRESHOLD):
        try:
            self.analyzer = _presidio_analyzer()
        except ImportError as error:
            raise ImportError(
                "--scrub_pii needs presidio-analyzer and python-stdnum: pip install 'forge-transformer[privacy]'."
            ) from error
        self.score_threshold = score_threshold

    def find(self, text: str) -> list[tuple[str, int, int]]:
        """Non-overlapping ``(type, start, end)`` spans of personal data in ``text``, in order.

        Overlapping detections keep the longest span (an e-mail address wins over the domain inside it).
        """
        if not text or not text.strip():
            return []
        spaced, origin = _space_cjk_boundaries(text)
        results = self.analyzer.analyze(
            spaced, language="en", entities=list(ENTITY_TYPES), score_threshold=self.score_threshold
        )
        spans = []
        for r in results:
            inside = [origin[i] for i in range(r.start, r.end) if origin[i] >= 0]  # inserted spaces are -1
            if not inside:
                continue
            kind, start, end = ENTITY_TYPES[r.entity_type], inside[0], inside[-1] + 1
            if kind == "URL":
                start, end = _trim_quotes(text, start, end)
                if not _plausible_url(text[start:end]):
                    continue
            spans.append((kind, start, end, r.score))
        spans.sort(key=lambda s: (-(s[2] - s[1]), -s[3], s[1]))
        kept: list[tuple[str, int, int]] = []
        for kind, start, end, _ in spans:
            if all(end <= s or start >= e for _, s, e in kept):
                kept.append((kind, start, end))
        return sorted(kept, key=lambda s: s[1])

    def scrub(self, text: str) -> tuple[str, dict[str, int]]:
        """``text`` with each detected value replaced by its placeholder, and the counts by type."""
        counts = dict.fromkeys(PLACEHOLDER_TYPES, 0)
        spans = self.find(text)
        if not spans:
            return text, counts
        pieces, last = [], 0
        for kind, start, end in spans:
            pieces += [text[last:start], placeholder(kind)]
            counts[kind] += 1
            last = end
        pieces.append(text[last:])
        return "".join(pieces), counts

    def scrub_texts(self, texts: Iterable[str], report: Optional[PiiReport] = None) -> Iterator[str]:
        """Scrub a stream of texts (lazily), adding to ``report``."""
        for text in texts:
            clean, counts = self.scrub(text or "")
            if report is not None:
                report.add(counts)
            yield clean


_QUOTES = "'\"‘’“”`"
# A bare domain (no scheme, no www.): a name of letters, digits and hyphens, then a lower-case top-level domain.
_BARE_DOMAIN = re.compile(r"(?:[A-Za-z0-9-]+\.)+[a-z]{2,}(?:[/:?#]\S*)?")


def _trim_quotes(text: str, start: int, end: int) -> tuple[int, int]:
    """Presidio's quoted-URL pattern includes the quotes; they are not part of the URL."""
    while start < end and text[start] in _QUOTES:
        start += 1
    while end > start and text[end - 1] in _QUOTES:
        end -= 1
    return start, end


def _plausible_url(value: str) -> bool:
    """Drop Presidio's bare-domain guesses that are sentence joins in real text ("plates.Cu", "M.Ph", "1902-1943.Sh",
    "of...Ma": a missing space after a full stop, read as a country TLD). Measured on ../shared/data pretrain text."""
    lowered = value.lower()
    if "://" in lowered or lowered.startswith("www."):
        return True
    return bool(_BARE_DOMAIN.fullmatch(value))


def _space_cjk_boundaries(text: str) -> tuple[str, list[int]]:
    """``text`` with a space between CJK and ASCII letters/digits, and for each of its characters the index in
    ``text`` (-1 for an inserted space)."""
    pieces, origin, last = [], [], 0
    for match in _CJK_ASCII_BOUNDARY.finditer(text):
        pieces += [text[last : match.start()], " "]
        origin += [*range(last, match.start()), -1]
        last = match.start()
    pieces.append(text[last:])
    origin += range(last, len(text))
    return "".join(pieces), origin


@lru_cache(maxsize=1)
def _default_scrubber() -> PiiScrubber:
    return PiiScrubber()


def scrub_batch(batch: dict[str, list], text_column: str) -> dict[str, list]:
    """``datasets.map(batched=True)`` function: scrub ``text_column``; add ``__pii_<TYPE>`` count columns."""
    scrubber = _default_scrubber()
    out: dict[str, list] = {text_column: [], **{f"__pii_{k}": [] for k in PLACEHOLDER_TYPES}}
    for text in batch[text_column]:
        clean, counts = scrubber.scrub(text or "")
        out[text_column].append(clean)
        for kind, n in counts.items():
            out[f"__pii_{kind}"].append(n)
    return out


def scrub_dataset(dataset: Any, text_column: str, num_proc: Optional[int] = None, desc: str = "scrubbing PII") -> tuple[Any, PiiReport]:
    """Scrub a ``datasets.Dataset``'s ``text_column``; returns the scrubbed dataset and its report."""
    if text_column not in dataset.column_names:
        raise ValueError(f"--scrub_pii: text column {text_column!r} not found; columns are {dataset.column_names}.")
    _default_scrubber()  # fail here, with the install hint, rather than inside a worker process
    mapped = dataset.map(scrub_batch, batched=True, num_proc=num_proc, fn_kwargs={"text_column": text_column}, desc=desc)
    report = PiiReport(texts=len(mapped))
    columns = [f"__pii_{k}" for k in PLACEHOLDER_TYPES]
    changed = [0] * len(mapped)
    for kind, column in zip(PLACEHOLDER_TYPES, columns):
        values = mapped[column]
        report.replaced[kind] = int(sum(values))
        changed = [c or v for c, v in zip(changed, values)]
    report.texts_changed = sum(1 for c in changed if c)
    return mapped.remove_columns(columns), report


def scrub_splits(raw: Any, text_column: str, num_proc: Optional[int] = None) -> tuple[Any, dict[str, PiiReport]]:
    """Scrub every split of a ``DatasetDict``; returns it and a report per split.

    Streamed splits are refused: their report could only be known after training had read them. Scrub the files
    first with ``python -m recipes.privacy.pii`` instead.
    """
    import datasets

    if isinstance(raw, datasets.IterableDatasetDict) or any(isinstance(d, datasets.IterableDataset) for d in raw.values()):
        raise ValueError(
            "--scrub_pii with --streaming is not supported: the report of what was replaced must be complete before "
            "training. Scrub the corpus files first (python -m recipes.privacy.pii --input IN.jsonl --output OUT.jsonl) and "
            "train on the scrubbed files, or drop --streaming."
        )
    reports = {}
    for split in list(raw):
        raw[split], reports[split] = scrub_dataset(raw[split], text_column, num_proc, desc=f"scrubbing PII ({split})")
        logger.info("--scrub_pii %s: %s", split, reports[split].to_dict()["replaced"])
    return raw, reports


def save_reports(reports: dict[str, PiiReport], folder: str | os.PathLike) -> Path:
    """Write ``folder/pii_report.json``: the per-split counts (never the values)."""
    path = Path(folder) / REPORT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({split: r.to_dict() for split, r in reports.items()}, indent=2) + "\n", encoding="utf-8")
    return path


def card_section(reports: dict[str, PiiReport | dict[str, Any]]) -> tuple[str, str]:
    """The model card's "Personal data" section from per-split reports (counts only)."""
    rows = []
    for split, report in reports.items():
        data = report.to_dict() if isinstance(report, PiiReport) else report
        counts = ", ".join(f"{kind} {n}" for kind, n in data["replaced"].items())
        rows.append(f"- {split}: {data['texts_changed']} of {data['texts']} texts changed; replaced {counts}")
    body = (
        "Before tokenisation and training, e-mail addresses, phone numbers, URLs, credit-card numbers, ID numbers "
        "(IBAN, US SSN, Chinese resident ID) and IP addresses in the corpus were replaced by typed placeholders such "
        "as `<EMAIL>` (`--scrub_pii`, detector: Microsoft Presidio's pattern recognizers). Counts by type:\n\n"
        + "\n".join(rows)
        + "\n\nNot removed: names, postal addresses and other personal data that have no fixed pattern, and any value "
        "the detector missed. Scrubbing lowers, but does not remove, the risk that the model memorises personal data."
    )
    return ("Personal data", body)


def _read_texts(path: Path, text_column: str) -> Iterator[dict[str, Any] | str]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if path.suffix == ".txt":
                yield line.rstrip("\n")
            elif line.strip():
                yield json.loads(line)


def main(argv: Optional[list[str]] = None) -> PiiReport:
    """Scrub a .jsonl (one object per line, ``--text_column``) or .txt file into a new file, plus its report."""
    parser = argparse.ArgumentParser(prog="python -m recipes.privacy.pii", description=main.__doc__)
    parser.add_argument("--input", required=True, help="A .jsonl or .txt file.")
    parser.add_argument("--output", required=True, help="The scrubbed file (must not exist); the report is written "
                        f"next to it as <output>.{REPORT_NAME}.")
    parser.add_argument("--text_column", default="text", help="JSON field to scrub (.jsonl input).")
    args = parser.parse_args(argv)
    source, target = Path(args.input), Path(args.output)
    if source.suffix not in (".jsonl", ".txt"):
        parser.error(f"--input {source}: only .jsonl and .txt are supported.")
    if target.exists():
        parser.error(f"--output {target} exists; choose a new file (nothing is overwritten).")
    scrubber, report = PiiScrubber(), PiiReport()
    tmp = target.with_name(f".{target.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        for number, item in enumerate(_read_texts(source, args.text_column), 1):
            if isinstance(item, str):
                clean, counts = scrubber.scrub(item)
                out.write(clean + "\n")
            else:
                if args.text_column not in item:
                    parser.error(f"{source}:{number}: no field {args.text_column!r}; pass --text_column.")
                clean, counts = scrubber.scrub(item[args.text_column] or "")
                out.write(json.dumps({**item, args.text_column: clean}, ensure_ascii=False) + "\n")
            report.add(counts)
    os.replace(tmp, target)
    report.save(target.parent, f"{target.name}.{REPORT_NAME}")
    print(json.dumps(report.to_dict(), indent=2))
    return report


if __name__ == "__main__":
    main()
