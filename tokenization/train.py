"""Train a Forge byte-level BPE vocabulary.

Command line (every flag has ``--help``)::

    python -m tokenization.train --train_file ../shared/data/pretrain/train.jsonl --vocab_size 16384 \\
        --output_dir outputs/tokenizer-en
    python -m tokenization.train --train_file a.txt b.csv --text_column body --vocab_size 8000 --output_dir tok
    python -m tokenization.train --dataset_name wikitext --dataset_config_name wikitext-2-raw-v1 --split train \\
        --streaming --vocab_size 32000 --output_dir tok

Inputs: ``.txt`` (one text per non-empty line), ``.jsonl`` / ``.json`` (JSON Lines, or one JSON array of objects),
``.csv`` (header row), ``.parquet``, or a ``datasets`` dataset (a local folder/script or a Hub name; ``--streaming``
for corpora larger than memory). The output folder loads with ``AutoTokenizer.from_pretrained`` (the fast class),
``ForgeTokenizer.from_pretrained`` (slow: ``vocab.json`` + ``merges.txt``) and, in a process where this package is
not installed, ``AutoTokenizer.from_pretrained(folder, trust_remote_code=True)`` (the code files are copied in).

From Python (``recipes/pretrain.py`` does this when no tokenizer is given)::

    from tokenization.train import train_tokenizer
    tokenizer = train_tokenizer(texts, vocab_size=16384)
"""

from __future__ import annotations

import csv
import importlib
import itertools
import json
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .tokenization_forge import DEFAULT_NUM_SENTINELS
from .tokenization_forge_fast import ForgeTokenizerFast
from .utils import add_task_tokens, check_task_tokens


logger = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".txt", ".json", ".jsonl", ".csv", ".parquet")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt")


def train_tokenizer(
    texts: Iterable[str] | Iterable[list[str]],
    vocab_size: int = 16384,
    num_sentinels: int = DEFAULT_NUM_SENTINELS,
    min_frequency: int = 2,
    show_progress: bool = True,
    length: int | None = None,
    added_tokens: Sequence[str] = (),
) -> ForgeTokenizerFast:
    """Train a :class:`ForgeTokenizerFast` from scratch on ``texts``.

    Args:
        texts: strings, or batches (lists) of strings; read once, so a generator is fine.
        vocab_size: final vocabulary size, special tokens and the 256 byte symbols included.
        num_sentinels: how many ``<extra_id_i>`` sentinels (ids 5 .. 4+num_sentinels).
        min_frequency: a pair must occur at least this often to be merged.
        show_progress: the ``tokenizers`` progress bar.
        length: number of items in ``texts``, if known (for the progress bar).
        added_tokens: strings kept whole, one token each (ordinary tokens: decoded, never skipped as special), e.g.
            DialogSum's speaker tags ``#Person1#``, which the pre-tokenizer would otherwise cut into ``#``,
            ``Person``, ``1``, ``#`` before BPE sees them. Printable ASCII without spaces; they take the last ids,
            and BPE learns ``vocab_size - len(added_tokens)`` entries, so the total stays ``vocab_size``.
    """
    if num_sentinels < 0:
        raise ValueError(f"num_sentinels must be >= 0, got {num_sentinels}")
    added = list(dict.fromkeys(added_tokens))
    check_task_tokens(added)  # before a long training run, not after it
    blank = ForgeTokenizerFast(num_sentinels=num_sentinels)
    tokenizer = blank.train_new_from_iterator(
        _batched(texts), vocab_size=vocab_size - len(added), length=length, min_frequency=min_frequency,
        show_progress=show_progress,
    )
    if added:
        add_task_tokens(tokenizer, None, added, special=False)
    return tokenizer


def _batched(texts: Iterable, size: int = 1000) -> Iterator[list[str]]:
    """Group single strings into lists (the Rust trainer is faster on batches); pass lists through."""
    batch: list[str] = []
    for item in texts:
        if isinstance(item, str):
            batch.append(item)
            if len(batch) >= size:
                yield batch
                batch = []
        else:
            if batch:
                yield batch
                batch = []
            yield list(item)
    if batch:
        yield batch


# --- Reading corpora -------------------------------------------------------------------------------------------------
def _column(record: object, text_column: str, where: str) -> str:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object with a {text_column!r} field, got {type(record).__name__}")
    if text_column not in record:
        raise ValueError(
            f"{where}: no column {text_column!r} (columns: {sorted(record)}); pass --text_column with one of them"
        )
    value = record[text_column]
    if value is None:
        return ""
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return " ".join(value)  # pre-split words (e.g. an SRL `tokens` column)
    if not isinstance(value, str):
        raise ValueError(f"{where}: column {text_column!r} holds {type(value).__name__}, not text")
    return value


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) with a clear error naming the file and line on invalid UTF-8."""
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                yield line_no, raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(
                    f"{path}:{line_no}: not valid UTF-8 ({err.reason} at byte {err.start}); re-encode the file as UTF-8"
                ) from None


def iter_file_texts(path: str | os.PathLike, text_column: str = "text") -> Iterator[str]:
    """Yield the texts of one corpus file (see the module docstring for formats)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ValueError(f"{path}: unsupported file type {suffix!r}; use one of {', '.join(SUPPORTED_SUFFIXES)}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: file is empty")
    count = 0
    if suffix == ".txt":
        for _, line in _lines(path):
            line = line.rstrip("\r\n")
            if line.strip():
                count += 1
                yield line
    elif suffix in (".json", ".jsonl"):
        with open(path, "rb") as handle:
            first = handle.read(1024).lstrip()[:1]
        if suffix == ".json" and first == b"[":
            try:
                records = json.loads(path.read_bytes().decode("utf-8"))
            except UnicodeDecodeError as err:
                raise ValueError(f"{path}: not valid UTF-8 at byte {err.start}; re-encode the file as UTF-8") from None
            for i, record in enumerate(records):
                count += 1
                yield _column(record, text_column, f"{path}: item {i}")
        else:
            for line_no, line in _lines(path):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{line_no}: invalid JSON ({err.msg}); expected one object per line") from None
                count += 1
                yield _column(record, text_column, f"{path}:{line_no}")
    elif suffix == ".csv":
        reader = csv.DictReader(line for _, line in _lines(path))
        if reader.fieldnames is None:
            raise ValueError(f"{path}: file is empty")
        if text_column not in reader.fieldnames:
            raise ValueError(f"{path}: no column {text_column!r} (columns: {reader.fieldnames}); pass --text_column")
        for record in reader:
            count += 1
            yield record[text_column] or ""
    else:  # .parquet
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        if text_column not in parquet.schema_arrow.names:
            raise ValueError(
                f"{path}: no column {text_column!r} (columns: {parquet.schema_arrow.names}); pass --text_column"
            )
        for batch in parquet.iter_batches(columns=[text_column]):
            for value in batch.column(0).to_pylist():
                count += 1
                yield value or ""
    if count == 0:
        raise ValueError(f"{path}: no texts found (only blank lines?)")


def iter_dataset_texts(
    dataset_name: str, dataset_config_name: str | None = None, split: str = "train",
    text_column: str = "text", streaming: bool = False,
) -> Iterator[str]:
    """Yield the ``text_column`` of a ``datasets`` dataset (local path or Hub name)."""
    import datasets

    dataset = datasets.load_dataset(dataset_name, dataset_config_name, split=split, streaming=streaming)
    columns = dataset.column_names
    if columns is not None and text_column not in columns:
        raise ValueError(f"dataset {dataset_name!r} split {split!r} has no column {text_column!r} "
                         f"(columns: {columns}); pass --text_column")
    for row in dataset:
        yield row[text_column] or ""


# --- Command line ----------------------------------------------------------------------------------------------------
@dataclass
class TrainTokenizerArguments:
    """Arguments of ``python -m tokenization.train``."""

    output_dir: str = field(metadata={"help": "Folder to write the tokenizer to."})
    train_file: list[str] | None = field(
        default=None, metadata={"help": "One or more corpus files: .txt (a text per line), .json/.jsonl, .csv, .parquet."}
    )
    text_column: str = field(default="text", metadata={"help": "Column holding the text (json/csv/parquet/datasets)."})
    text_columns: list[str] | None = field(
        default=None,
        metadata={
            "help": "Several columns, all of whose texts train one vocabulary (replaces --text_column). A task "
            "tokenizer: e.g. `--train_file translation/train.jsonl --text_columns de en` trains a joint "
            "source+target vocabulary; a column of word lists (SRL tokens) is read as the words joined by spaces."
        },
    )
    dataset_name: str | None = field(
        default=None, metadata={"help": "A `datasets` dataset: a local folder/script or a Hub name (instead of --train_file)."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "The dataset configuration name."})
    split: str = field(default="train", metadata={"help": "The dataset split to train on."})
    streaming: bool = field(default=False, metadata={"help": "Stream the dataset instead of downloading it whole."})
    vocab_size: int = field(default=16384, metadata={"help": "Vocabulary size, special tokens and 256 bytes included."})
    num_sentinels: int = field(
        default=DEFAULT_NUM_SENTINELS, metadata={"help": "Number of <extra_id_i> sentinel tokens (span corruption)."}
    )
    min_frequency: int = field(default=2, metadata={"help": "Minimum pair frequency for a merge."})
    max_samples: int | None = field(
        default=None, metadata={"help": "Train on at most this many texts (of each column, with --text_columns)."}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Overwrite a tokenizer already in --output_dir."}
    )
    no_progress: bool = field(default=False, metadata={"help": "Hide the progress bar."})
    added_tokens: list[str] | None = field(
        default=None,
        metadata={"help": "Strings kept whole as one ordinary token each, e.g. `--added_tokens '#Person1#' "
                  "'#Person2#'` (DialogSum's speaker tags, which the pre-tokenizer would cut into four pieces each). "
                  "Printable ASCII without spaces; they count toward --vocab_size."},
    )
    scrub_pii: bool = field(
        default=False,
        metadata={"help": "Replace e-mail addresses, phone numbers, URLs, card and ID numbers in the corpus with "
                  "placeholders such as <EMAIL> before training (recipes.privacy.pii; pip install 'forge-transformer[privacy]'). "
                  "Counts by type go to <output_dir>/pii_report.json."},
    )


def corpus_from_args(args: TrainTokenizerArguments) -> Iterator[str]:
    """The training texts that ``args`` describe (files or dataset), capped at ``max_samples``."""
    if bool(args.train_file) == bool(args.dataset_name):
        raise ValueError("pass exactly one of --train_file or --dataset_name")
    columns = list(args.text_columns or [args.text_column])
    if args.train_file:
        for path in args.train_file:  # check all files up front, before a long training run
            if not Path(path).is_file():
                raise FileNotFoundError(f"training file not found: {path}")
        def column_texts(column: str) -> Iterator[str]:
            return itertools.chain.from_iterable(iter_file_texts(path, column) for path in args.train_file)
    else:
        def column_texts(column: str) -> Iterator[str]:
            return iter_dataset_texts(args.dataset_name, args.dataset_config_name, args.split, column, args.streaming)
    # --max_samples caps each column, so a joint vocabulary sees the same rows of every column
    return itertools.chain.from_iterable(itertools.islice(column_texts(c), args.max_samples) for c in columns)


def check_output_dir(output_dir: str | os.PathLike, overwrite: bool) -> None:
    """Refuse to overwrite a folder that already holds a tokenizer unless ``overwrite``."""
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--output_dir {path} exists and is not a folder")
    existing = [name for name in TOKENIZER_FILES if (path / name).exists()]
    if existing and not overwrite:
        raise ValueError(
            f"--output_dir {path} already holds a tokenizer ({', '.join(existing)}); "
            "pass --overwrite_output_dir to replace it or choose another folder"
        )


def save_tokenizer(tokenizer: ForgeTokenizerFast, output_dir: str | os.PathLike) -> None:
    """Save a folder that loads with AutoTokenizer, the slow class, and trust_remote_code (code files copied in)."""
    type(tokenizer).register_for_auto_class("AutoTokenizer")
    tokenizer.save_pretrained(str(output_dir))


def main(argv: list[str] | None = None) -> ForgeTokenizerFast:
    """Parse the command line, train, save; returns the trained tokenizer."""
    from transformers import HfArgumentParser

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    parser = HfArgumentParser(TrainTokenizerArguments, description=__doc__.split("\n\n")[0])
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    check_output_dir(args.output_dir, args.overwrite_output_dir)
    texts = corpus_from_args(args)
    pii_report = None
    if args.scrub_pii:
        # Not a model-folder file, so it may reach recipes/: "recipes.privacy.pii" in a checkout, forge.* installed.
        pii = importlib.import_module(__package__.removesuffix("tokenization") + "recipes.privacy.pii")
        PiiReport, PiiScrubber = pii.PiiReport, pii.PiiScrubber

        pii_report = PiiReport()
        texts = PiiScrubber().scrub_texts(texts, pii_report)
    logger.info("training a %d-token vocabulary (%d sentinels)", args.vocab_size, args.num_sentinels)
    tokenizer = train_tokenizer(
        texts, vocab_size=args.vocab_size, num_sentinels=args.num_sentinels,
        min_frequency=args.min_frequency, show_progress=not args.no_progress, added_tokens=args.added_tokens or (),
    )
    if len(tokenizer) < args.vocab_size:
        logger.warning("the corpus only supports %d tokens (asked for %d)", len(tokenizer), args.vocab_size)
    save_tokenizer(tokenizer, args.output_dir)
    if pii_report is not None:
        logger.info("personal data replaced (counts by type): %s -> %s", pii_report.to_dict()["replaced"],
                    pii_report.save(args.output_dir))
    logger.info("saved a %d-token tokenizer to %s", len(tokenizer), args.output_dir)
    return tokenizer


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
