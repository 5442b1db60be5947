"""Compare offline PII detector libraries on bench/pii_sample.jsonl (40 hand-written lines with planted e-mail
addresses, phone numbers in several national formats, URLs, credit-card numbers, ID numbers (IBAN, US SSN, Chinese
resident ID) and names, plus clean lines, some Chinese, that must stay untouched).

    python bench/pii_compare.py                       # table on stdout, JSON in bench/results/pii_compare.json
    python bench/pii_compare.py --only presidio       # one candidate

Per type: recall = planted values fully covered by detections of that type; precision = detections of the type
that overlap a planted value of the type. "overreach" counts detections reaching past the planted value (text that
is not personal data would be replaced, e.g. the Chinese characters glued to an e-mail address) and "clean lines
hit" the clean lines with any detection. Every candidate runs as installed, with no model download:
scrubadub (default detectors), datafog (regex engine), presidio-analyzer (its pattern recognizers, with a blank
spaCy pipeline in place of a downloaded model, so no names), and recipes.privacy.pii (Forge's scrubber, which is presidio
configured as described in recipes/privacy/pii.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")  # presidio's e-mail check: bundled list, no fetch

TYPES = ("EMAIL", "PHONE", "URL", "CREDIT_CARD", "ID", "NAME")


def scrubadub_detector():
    import scrubadub

    mapping = {"email": "EMAIL", "phone": "PHONE", "url": "URL", "credit_card": "CREDIT_CARD",
               "social_security_number": "ID", "name": "NAME"}
    scrubber = scrubadub.Scrubber()

    def detect(text):
        return [(mapping.get(f.type, f.type.upper()), f.beg, f.end) for f in scrubber.iter_filth(text)]

    return detect


def datafog_detector():
    import datafog

    mapping = {"EMAIL": "EMAIL", "PHONE": "PHONE", "CREDIT_CARD": "CREDIT_CARD", "SSN": "ID"}

    def detect(text):
        result = datafog.scan(text, engine="regex", entity_types=list(mapping))
        return [(mapping[e.type], e.start, e.end) for e in result.entities]

    return detect


def presidio_detector():
    import spacy
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    class BlankSpacyNlpEngine(SpacyNlpEngine):  # as installed, minus the model download
        def load(self):
            self.nlp = {"en": spacy.blank("en")}

    engine = BlankSpacyNlpEngine(models=[{"lang_code": "en", "model_name": "blank"}])
    engine.load()
    analyzer = AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])
    mapping = {"EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE", "URL": "URL", "CREDIT_CARD": "CREDIT_CARD",
               "IBAN_CODE": "ID", "US_SSN": "ID", "PERSON": "NAME"}

    def detect(text):
        return [(mapping[r.entity_type], r.start, r.end) for r in analyzer.analyze(text, language="en", entities=list(mapping))]

    return detect


def forge_detector():
    from recipes.privacy.pii import PiiScrubber

    scrubber = PiiScrubber()

    def detect(text):
        return [(kind, start, end) for kind, start, end in scrubber.find(text)]

    return detect


CANDIDATES = {"scrubadub": scrubadub_detector, "datafog": datafog_detector, "presidio": presidio_detector,
              "forge (recipes.privacy.pii)": forge_detector}


def evaluate(detect, rows):
    stats = {t: {"planted": 0, "found": 0, "detections": 0, "correct": 0} for t in TYPES}
    overreach = clean_hits = 0
    for row in rows:
        text = row["text"]
        planted = []
        for item in row["pii"]:
            start = text.index(item["value"])
            planted.append((item["type"], start, start + len(item["value"])))
        found = [d for d in detect(text) if d[0] in TYPES]
        if not planted and found:
            clean_hits += 1
        for kind, start, end in planted:
            stats[kind]["planted"] += 1
            covered = set()
            for k, s, e in found:
                if k == kind:
                    covered.update(range(s, e))
            if set(range(start, end)) <= covered:
                stats[kind]["found"] += 1
        for kind, s, e in found:
            stats[kind]["detections"] += 1
            hits = [(ps, pe) for k, ps, pe in planted if k == kind and s < pe and ps < e]
            if hits:
                stats[kind]["correct"] += 1
                if s < min(ps for ps, _ in hits) or e > max(pe for _, pe in hits):
                    overreach += 1
    table = {}
    for kind, st in stats.items():
        table[kind] = {
            "precision": round(st["correct"] / st["detections"], 2) if st["detections"] else None,
            "recall": round(st["found"] / st["planted"], 2) if st["planted"] else None,
            **st,
        }
    return {"per_type": table, "overreach": overreach, "clean_lines_hit": clean_hits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", default=str(ROOT / "bench" / "pii_sample.jsonl"))
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "pii_compare.json"))
    parser.add_argument("--only", nargs="*", help="candidate names (default: all)")
    args = parser.parse_args()
    rows = [json.loads(line) for line in Path(args.sample).read_text(encoding="utf-8").splitlines() if line.strip()]
    results = {}
    for name, make in CANDIDATES.items():
        if args.only and not any(o in name for o in args.only):
            continue
        try:
            results[name] = evaluate(make(), rows)
        except Exception as error:  # a candidate that does not install or run offline is reported, not fatal
            results[name] = {"error": f"{type(error).__name__}: {error}"}
    clean = sum(1 for r in rows if not r["pii"])
    print(f"{len(rows)} lines ({clean} clean); precision / recall per type (- : no detections or nothing planted)\n")
    print("| library | " + " | ".join(TYPES) + " | overreach | clean lines hit |")
    print("|---" * (len(TYPES) + 3) + "|")
    for name, res in results.items():
        if "error" in res:
            print(f"| {name} | " + " | ".join("error" for _ in TYPES) + f" | {res['error'][:60]} | |")
            continue
        cells = []
        for kind in TYPES:
            t = res["per_type"][kind]
            p = "-" if t["precision"] is None else f"{t['precision']:.2f}"
            r = "-" if t["recall"] is None else f"{t['recall']:.2f}"
            cells.append(f"{p} / {r}")
        print(f"| {name} | " + " | ".join(cells) + f" | {res['overreach']} | {res['clean_lines_hit']}/{clean} |")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps({"sample": os.path.relpath(args.sample, ROOT), "lines": len(rows),
                                             "results": results}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
