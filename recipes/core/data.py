"""Loading raw datasets and validating them before any training starts.

Every problem with the user's data ends in ONE exception class, :class:`DataValidationError`
(a ``ValueError``), whose message names the file (and line, where there is one), the column, what
is wrong and how to fix it. The recipes call these functions before building a model, so a bad
line never surfaces as a cryptic Arrow error at hour three.

Local JSON Lines / JSON / CSV / TSV / text files are pre-scanned line by line here because the
errors of ``datasets``/Arrow for a non-UTF-8 byte or a broken JSON line do not say where the
problem is.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import datasets
from datasets import DatasetDict, IterableDataset, IterableDatasetDict

logger = logging.getLogger(__name__)

__all__ = [
    "DataValidationError",
    "SplitSource",
    "ForgeDatasetDict",
    "ColumnSpec",
    "load_raw_datasets",
    "scan_local_file",
    "select_samples",
    "validate_columns",
    "check_not_empty",
    "check_labels",
    "build_label_list",
    "locate",
    "first_problem_rows",
]

# file suffix -> datasets builder name
_BUILDERS = {
    ".jsonl": "json",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".txt": "text",
}
_MAX_REPORTED = 5  # how many offending rows an error message lists


class DataValidationError(ValueError):
    """The input data cannot be used as given. The message says where, what, and how to fix it."""


# --------------------------------------------------------------------------------------------
# Where a row comes from (so errors can name file and line)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SplitSource:
    """Origin of one split: a local file (with the line numbers of its rows) or a Hub dataset."""

    split: str
    origin: str  # file path or "hub dataset NAME"
    row_lines: Optional[tuple[int, ...]] = None  # 1-based file line of each row (JSON Lines only)
    header_lines: int = 0  # CSV/TSV: the header line shifts row numbers by one

    def locate(self, row: int) -> str:
        """Human-readable position of ``row`` (0-based row index of the split)."""
        if self.row_lines is not None and 0 <= row < len(self.row_lines):
            return f"{self.origin} line {self.row_lines[row]}"
        if self.origin.startswith("hub dataset"):
            return f"{self.origin}, split '{self.split}', row {row}"
        if self.header_lines or self.origin.endswith((".txt",)):
            return f"{self.origin} line {row + 1 + self.header_lines}"
        return f"{self.origin} (split '{self.split}'), row {row}"


class ForgeDatasetDict(DatasetDict):
    """A DatasetDict that remembers where each split came from (``.sources``)."""

    sources: dict[str, SplitSource]


def locate(raw: Mapping[str, Any], split: str, row: int) -> str:
    """Describe row ``row`` of ``split`` for an error message (file and line when known)."""
    sources = getattr(raw, "sources", None) or {}
    source = sources.get(split)
    if source is None:
        return f"split '{split}', row {row}"
    return source.locate(row)


# --------------------------------------------------------------------------------------------
# Pre-scan of local files
# --------------------------------------------------------------------------------------------
def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


_SCAN_CACHE: dict[tuple[str, int, int], tuple[int, ...]] = {}


def scan_local_file(path: Union[str, Path]) -> Optional[tuple[int, ...]]:
    """Check that a local data file is UTF-8 (and, for JSON Lines, that every line is a JSON object
    whose fields keep one type throughout). Returns the 1-based line number of each row for JSON
    Lines files (blank lines are skipped by the loader), else None.

    Raises:
        DataValidationError: naming the file, the line and the fix.
    """
    path = Path(path)
    if not path.exists():
        raise DataValidationError(f"Data file {path} does not exist. Check the --*_file argument.")
    if not path.is_file():
        raise DataValidationError(f"Data path {path} is not a file. Pass a file to --train_file/--validation_file/--test_file.")
    suffix = path.suffix.lower()
    if suffix not in _BUILDERS:
        raise DataValidationError(
            f"Data file {path} has an unsupported extension {suffix!r}. Use one of "
            f"{', '.join(sorted(_BUILDERS))}."
        )
    if suffix == ".parquet":
        return None
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key in _SCAN_CACHE:
        return _SCAN_CACHE[key] or None
    if stat.st_size == 0:
        raise DataValidationError(f"Data file {path} is empty. Give a file with at least one example.")

    is_json = suffix in (".jsonl", ".json")
    if suffix == ".json" and _is_single_json_document(path):
        _SCAN_CACHE[key] = ()
        return None

    row_lines: list[int] = []
    kinds: dict[str, tuple[str, int]] = {}  # field -> (json kind, first line seen)
    with open(path, "rb") as handle:
        for lineno, raw_line in enumerate(handle, start=1):
            try:
                line = raw_line.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataValidationError(
                    f"{path} line {lineno} is not valid UTF-8 (byte {err.start} of the line: "
                    f"{raw_line[max(0, err.start - 10):err.start + 10]!r}). Re-save the file as UTF-8, "
                    f"e.g. `iconv -f latin1 -t utf-8 {path.name} > fixed{suffix}`."
                ) from None
            if lineno == 1:
                line = line.lstrip("\ufeff")  # tolerate a UTF-8 byte-order mark
            if not is_json:
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataValidationError(
                    f"{path} line {lineno} is not valid JSON ({err.msg} at column {err.colno}). "
                    "Every line of a JSON Lines file must be one complete JSON object; fix or delete that line."
                ) from None
            if not isinstance(record, dict):
                raise DataValidationError(
                    f"{path} line {lineno} is a JSON {_json_kind(record)}, not an object. Each line must "
                    'be an object such as {"text": "...", "label": 0}.'
                )
            for name, value in record.items():
                kind = _json_kind(value)
                if kind == "null":
                    continue
                seen = kinds.get(name)
                if seen is None:
                    kinds[name] = (kind, lineno)
                elif seen[0] != kind:
                    raise DataValidationError(
                        f"{path} line {lineno}: field '{name}' is a {kind}, but it was a {seen[0]} on line "
                        f"{seen[1]}. A column must keep one type in every line; fix that line."
                    )
            row_lines.append(lineno)
    if is_json and not row_lines:
        raise DataValidationError(f"Data file {path} holds no JSON lines. Give at least one example.")
    result = tuple(row_lines) if is_json else None
    _SCAN_CACHE[key] = result or ()
    return result


def _is_single_json_document(path: Path) -> bool:
    """True when a .json file is one JSON document (a list of records), not JSON Lines."""
    with open(path, "rb") as handle:
        head = handle.read(4096).lstrip()
    if not head.startswith(b"["):
        return False
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except UnicodeDecodeError as err:
        raise DataValidationError(f"{path} is not valid UTF-8 ({err}). Re-save the file as UTF-8.") from None
    except json.JSONDecodeError as err:
        raise DataValidationError(
            f"{path} line {err.lineno} is not valid JSON ({err.msg} at column {err.colno}). Fix the file or "
            "convert it to JSON Lines (one object per line)."
        ) from None
    if not isinstance(document, list) or not all(isinstance(item, dict) for item in document):
        raise DataValidationError(
            f"{path} must be a JSON list of objects (or JSON Lines: one object per line)."
        )
    return True


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------
def load_raw_datasets(
    data_args: Any,
    cache_dir: Optional[str] = None,
    seed: int = 42,
    token: Optional[str] = None,
) -> Union[ForgeDatasetDict, IterableDatasetDict]:
    """Load the raw splits named by ``data_args`` (a :class:`recipes.core.args.DataArguments`).

    Either ``data_args.dataset_name`` (a Hub dataset; ``streaming`` supported) or local files
    (``train_file`` / ``validation_file`` / ``test_file``: jsonl, json, csv, tsv, parquet, txt).
    Local files are pre-scanned (UTF-8, valid JSON lines, consistent field types). When there is
    no validation split and ``validation_split_percentage`` is set, that share of train is split
    off with ``seed``.

    Raises:
        DataValidationError: anything wrong with the files or the dataset name.
    """
    dataset_name = getattr(data_args, "dataset_name", None)
    data_files = data_args.data_files() if hasattr(data_args, "data_files") else {}
    streaming = bool(getattr(data_args, "streaming", False))
    if dataset_name and data_files:
        raise DataValidationError(
            "Give either --dataset_name or local files (--train_file/--validation_file/--test_file), not both."
        )
    if not dataset_name and not data_files:
        raise DataValidationError(
            "No data given. Pass --dataset_name NAME (Hugging Face Hub) or --train_file/--validation_file/"
            "--test_file with local .jsonl/.json/.csv/.tsv/.parquet/.txt files."
        )

    if not streaming:  # datasets writes Arrow files to its cache; its error for a read-only one blames the data
        from .guards import check_datasets_cache_writable

        check_datasets_cache_writable(cache_dir)
    sources: dict[str, SplitSource] = {}
    if dataset_name:
        try:
            raw = datasets.load_dataset(
                dataset_name,
                getattr(data_args, "dataset_config_name", None),
                cache_dir=cache_dir,
                streaming=streaming,
                revision=getattr(data_args, "dataset_revision", None),
                token=token,
            )
        except Exception as err:  # the datasets library raises many unrelated types here
            offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
            hint = (
                " The Hub is unreachable in offline mode (HF_HUB_OFFLINE=1); use local files with --train_file."
                if offline
                else " Check the name and --dataset_config_name, your network, or use local files."
            )
            raise DataValidationError(f"Could not load dataset '{dataset_name}': {err}.{hint}") from err
        for split in raw:
            sources[split] = SplitSource(split, f"hub dataset '{dataset_name}'")
    else:
        builders = set()
        for split, file_path in data_files.items():
            row_lines = scan_local_file(file_path)
            suffix = Path(file_path).suffix.lower()
            builders.add((_BUILDERS[suffix], suffix == ".tsv"))
            header = 1 if suffix in (".csv", ".tsv") else 0
            sources[split] = SplitSource(split, str(file_path), row_lines, header)
        if len(builders) > 1:
            raise DataValidationError(
                f"All data files must have the same format; got {sorted(data_files.values())}. Convert them "
                "to one format (JSON Lines recommended)."
            )
        builder, is_tsv = builders.pop()
        kwargs: dict[str, Any] = {"delimiter": "\t"} if is_tsv else {}
        try:
            raw = datasets.load_dataset(
                builder, data_files=data_files, cache_dir=cache_dir, streaming=streaming, **kwargs
            )
        except Exception as err:  # Arrow/pandas errors for ragged or inconsistent files
            from .guards import raise_if_cache_write_failure

            raise_if_cache_write_failure(err, cache_dir)  # a full or read-only cache is not a data problem
            raise DataValidationError(
                f"Could not read {sorted(data_files.values())} as {builder}: {err}. Check that every row has "
                "the same fields with the same types (nested lists/objects included)."
            ) from err

    if "validation" not in raw and getattr(data_args, "validation_split_percentage", None):
        if streaming or "train" not in raw:
            raise DataValidationError(
                "--validation_split_percentage needs a non-streamed train split; give --validation_file instead."
            )
        pct = data_args.validation_split_percentage
        split = raw["train"].train_test_split(test_size=pct / 100.0, seed=seed)
        raw["train"], raw["validation"] = split["train"], split["test"]
        origin = sources["train"].origin
        sources["train"] = SplitSource("train", f"{origin} ({100 - pct}% kept for training)")
        sources["validation"] = SplitSource("validation", f"{origin} ({pct}% held out for validation)")

    if streaming:
        return raw
    result = ForgeDatasetDict(dict(raw))
    result.sources = sources
    return result


def select_samples(raw: Mapping[str, Any], data_args: Any) -> Mapping[str, Any]:
    """Keep the first ``max_train_samples`` / ``max_eval_samples`` / ``max_predict_samples`` rows.

    Row indices are unchanged (the first N rows), so :func:`locate` still names the right lines.
    """
    limits = {
        "train": getattr(data_args, "max_train_samples", None),
        "validation": getattr(data_args, "max_eval_samples", None),
        "test": getattr(data_args, "max_predict_samples", None),
    }
    for split, limit in limits.items():
        if limit is None or split not in raw:
            continue
        ds = raw[split]
        if isinstance(ds, IterableDataset):
            raw[split] = ds.take(limit)
        elif limit < len(ds):
            raw[split] = ds.select(range(limit))
    return raw


# --------------------------------------------------------------------------------------------
# Column and value validation
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ColumnSpec:
    """A required column: its name, the flag that names it, and what its values must be.

    ``kind`` is one of: "text" (a string), "label" (an int or string), "int", "text_list"
    (a non-empty list of strings), "squad_answers" ({"text": [str], "answer_start": [int]}),
    "dict" (an object). ``optional`` columns may be absent; ``nullable`` values may be null.
    """

    name: str
    flag: str
    kind: str
    optional: bool = False
    nullable: bool = False


def _check_value(kind: str, value: Any) -> Optional[str]:
    """None when ``value`` fits ``kind``, else a short description of what is wrong."""
    if kind == "text":
        return None if isinstance(value, str) else f"expected text, got {_describe(value)}"
    if kind == "label":
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            if isinstance(value, float) and not math.isnan(value) and value.is_integer():
                return None
            return f"expected an integer or string label, got {_describe(value)}"
        return None
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"expected an integer, got {_describe(value)}"
        return None
    if kind == "text_list":
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            return f"expected a non-empty list of strings, got {_describe(value)}"
        return None
    if kind == "squad_answers":
        if not isinstance(value, dict):
            return f'expected {{"text": [...], "answer_start": [...]}}, got {_describe(value)}'
        texts, starts = value.get("text"), value.get("answer_start")
        if not isinstance(texts, list) or not isinstance(starts, list):
            return 'expected lists under "text" and "answer_start"'
        if len(texts) != len(starts):
            return f'"text" has {len(texts)} entries but "answer_start" has {len(starts)}'
        if not all(isinstance(t, str) for t in texts):
            return 'every "text" entry must be a string'
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in starts):
            return 'every "answer_start" entry must be a non-negative integer'
        return None
    if kind == "dict":
        return None if isinstance(value, dict) else f"expected an object, got {_describe(value)}"
    raise ValueError(f"unknown ColumnSpec kind {kind!r}")


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _column_names(ds: Any) -> list[str]:
    names = getattr(ds, "column_names", None)
    if names is None and isinstance(ds, IterableDataset):
        first = next(iter(ds), None)
        names = list(first) if first else []
    return list(names or [])


def _iter_column(ds: Any, column: str, limit: Optional[int] = None) -> Iterable[Any]:
    if isinstance(ds, IterableDataset):
        for i, example in enumerate(ds):
            if limit is not None and i >= limit:
                return
            yield example.get(column)
    else:
        yield from ds[column]


def validate_columns(
    raw: Mapping[str, Any],
    specs: Sequence[ColumnSpec],
    splits: Optional[Iterable[str]] = None,
    streaming_rows: int = 1000,
) -> None:
    """Check that every split has the required columns and that their values have the right type.

    Raises:
        DataValidationError: a missing column (listing the columns that do exist and the flag to
            rename it), or the first rows whose value is null or of the wrong type (file and line).
    """
    for split in splits if splits is not None else list(raw):
        if split not in raw:
            continue
        ds = raw[split]
        available = _column_names(ds)
        origin = getattr(raw, "sources", {}).get(split)
        where = f"the {split} data ({origin.origin})" if origin else f"the {split} split"
        for spec in specs:
            if spec.name not in available:
                if spec.optional:
                    continue
                raise DataValidationError(
                    f"Column '{spec.name}' not found in {where}. Available columns: "
                    f"{', '.join(available) or '(none)'}. Pass --{spec.flag} with the right column name, "
                    "or rename the column in the data."
                )
            problems = []
            limit = streaming_rows if isinstance(ds, IterableDataset) else None
            for row, value in enumerate(_iter_column(ds, spec.name, limit)):
                if value is None:
                    message = None if (spec.nullable or spec.optional) else "value is missing (null)"
                else:
                    message = _check_value(spec.kind, value)
                if message:
                    problems.append(f"{locate(raw, split, row)}: {message}")
                    if len(problems) >= _MAX_REPORTED:
                        break
            if problems:
                raise DataValidationError(
                    f"Bad values in column '{spec.name}' (--{spec.flag}) of {where}:\n  "
                    + "\n  ".join(problems)
                    + "\nFix or remove those rows."
                )


def check_not_empty(ds: Any, split: str, stage: str = "", hint: str = "") -> None:
    """Raise when a split has no rows (``stage`` says after what, e.g. 'after filtering')."""
    if isinstance(ds, IterableDataset):
        if next(iter(ds), None) is not None:
            return
    elif ds is not None and len(ds) > 0:
        return
    where = f" {stage}" if stage else ""
    raise DataValidationError(
        f"The {split} split is empty{where}. "
        + (hint or "Check the data file, the --max_*_samples limits and the filters/length limits.")
    )


def build_label_list(ds: Any, column: str) -> list[Any]:
    """Sorted distinct labels of a column (ints sort numerically, strings alphabetically)."""
    features = getattr(ds, "features", None) or {}
    feature = features.get(column) if hasattr(features, "get") else None
    if isinstance(feature, datasets.ClassLabel):
        return list(range(feature.num_classes))
    values = set()
    for value in ds[column]:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        values.add(value)
    if any(isinstance(v, str) for v in values) and any(not isinstance(v, str) for v in values):
        raise DataValidationError(
            f"Column '{column}' mixes string and numeric labels ({sorted(map(str, values))[:10]}). Use one type."
        )
    return sorted(values)


def check_labels(
    raw: Mapping[str, Any],
    split: str,
    column: str,
    label_set: Iterable[Any],
    flag: str = "label_column",
    where_from: str = "the training data",
) -> None:
    """Raise when a split holds labels outside ``label_set`` (naming rows and the known labels)."""
    if split not in raw:
        return
    known = set(label_set)
    problems = []
    for row, value in enumerate(raw[split][column]):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if value not in known:
            problems.append(f"{locate(raw, split, row)}: label {value!r}")
            if len(problems) >= _MAX_REPORTED:
                break
    if problems:
        raise DataValidationError(
            f"Labels in column '{column}' (--{flag}) of the {split} split are outside the label set "
            f"{sorted(known, key=str)} taken from {where_from}:\n  " + "\n  ".join(problems)
            + "\nFix those rows, or add examples of those labels to the training data."
        )


def first_problem_rows(
    raw: Mapping[str, Any], split: str, predicate: Callable[[dict], Optional[str]]
) -> list[str]:
    """Run ``predicate(example) -> problem or None`` over a split; return up to 5 located problems."""
    problems: list[str] = []
    for row, example in enumerate(raw[split]):
        message = predicate(example)
        if message:
            problems.append(f"{locate(raw, split, row)}: {message}")
            if len(problems) >= _MAX_REPORTED:
                break
    return problems


def drop_hidden_labels(raw: Any, label_column: str, hidden: Any = -1) -> Any:
    """Remove ``label_column`` from a split whose labels are all ``hidden`` (GLUE's test splits: -1).

    Such a split has no labels to score against; with the column gone it is predicted without metrics
    (``--do_predict``) instead of failing the label check. Returns ``raw`` (changed in place).
    """
    for split in list(raw):
        ds = raw[split]
        if isinstance(ds, IterableDataset) or label_column not in (ds.column_names or []):
            continue
        if len(ds) and all(value == hidden for value in ds[label_column]):
            logger.info("The %s split's labels are all %r (hidden, as in GLUE's test sets): predicted without metrics.",
                        split, hidden)
            raw[split] = ds.remove_columns(label_column)
    return raw
