"""README's real-data commands fit the public datasets they name (offline).

Each command is read from README.md's "Real data: public datasets" block and parsed by its recipe's own
argument classes; the recipe's data path (``load_raw_datasets`` -> ``validate_for_task``, labels for
sentiment) then runs on a few rows with the dataset's schema (its column names, value types and split
names, copied from the dataset's Hub viewer), served where ``datasets.load_dataset(name, config)`` would
have fetched it. Nothing is downloaded; what this checks is that the flags and the columns agree.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict

REPO = Path(__file__).resolve().parents[1]

SST2 = {
    "train": [{"idx": 0, "sentence": "hide new secretions from the parental units ", "label": 0},
              {"idx": 1, "sentence": "that loves its characters and communicates something rather beautiful ", "label": 1}],
    "validation": [{"idx": 0, "sentence": "it 's a charming and often affecting journey . ", "label": 1},
                   {"idx": 1, "sentence": "unflinchingly bleak and desperate ", "label": 0}],
    "test": [{"idx": 0, "sentence": "uneasy mishmash of styles and genres .", "label": -1}],
}
MULTI30K = {
    split: [{"en": "Two young, White males are outside near many bushes.",
             "de": "Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche."}]
    for split in ("train", "validation", "test")
}
DIALOGSUM = {
    split: [{"id": f"{split}_0", "dialogue": "#Person1#: Hi, Mr. Smith. I'm Doctor Hawkins.\n#Person2#: I'm here for "
             "my annual check-up.", "summary": "Mr. Smith is getting a check-up from Doctor Hawkins.",
             "topic": "get a check-up"}]
    for split in ("train", "validation", "test")
}
_CONTEXT = "Architecturally, the school has a Catholic character. Atop the Main Building's gold dome is a statue."
SQUAD = {
    split: [{"id": "5733be284776f41900661182", "title": "University_of_Notre_Dame", "context": _CONTEXT,
             "question": "What sits on top of the Main Building?",
             "answers": {"text": ["a statue"], "answer_start": [_CONTEXT.index("a statue")]}}]
    for split in ("train", "validation")
}
HUB = {("stanfordnlp/sst2", None): SST2, ("glue", "sst2"): SST2, ("bentrevett/multi30k", None): MULTI30K,
       ("knkarthick/dialogsum", None): DIALOGSUM, ("rajpurkar/squad", None): SQUAD}


def readme_commands() -> list[list[str]]:
    """The recipe commands of README's public-datasets block, with $BASE / $COMMON expanded."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("### Real data: public datasets", 1)[1].split("\n### ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1).replace("\\\n", " ")
    variables = dict(re.findall(r'^(\w+)="?([^"\n#]*?)"?\s*(?:#.*)?$', block, re.M))
    commands = []
    for line in block.splitlines():
        if line.startswith("python -m recipes."):
            line = re.sub(r"\$(\w+)", lambda m: variables[m.group(1)], line.split("  #")[0])
            commands.append(shlex.split(line))
    return commands


def _serve(monkeypatch) -> list[tuple]:
    import datasets

    calls = []

    def load_dataset(name, config=None, **kwargs):
        calls.append((name, config))
        return DatasetDict({split: Dataset.from_list(rows) for split, rows in HUB[(name, config)].items()})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def _data_path(module: str, argv: list[str]) -> tuple:
    """Run the recipe's argument parsing and data checks (no model, no training)."""
    from recipes.core import args as A
    from recipes.core.data import build_label_list, check_labels, drop_hidden_labels, load_raw_datasets
    from recipes.core.tasks import validate_for_task

    data_class, task, training = {
        "recipes.sentiment": (A.SentimentDataArguments, "sentiment", A.ForgeTrainingArguments),
        "recipes.translation": (A.TranslationDataArguments, "translation", A.ForgeSeq2SeqTrainingArguments),
        "recipes.summarization": (A.SummarizationDataArguments, "summarization", A.ForgeSeq2SeqTrainingArguments),
        "recipes.qa": (A.QADataArguments, "qa", A.ForgeTrainingArguments),
    }[module]
    model_args, data_args, training_args = A.parse_args(A.ModelArguments, data_class, training, args=argv)
    raw = load_raw_datasets(data_args)
    validate_for_task(task, raw, data_args)
    if task == "sentiment":
        raw = drop_hidden_labels(raw, data_args.label_column)
        labels = build_label_list(raw["train"], data_args.label_column)
        for split in ("validation", "test"):  # as recipes/sentiment.py does: labelled splits only
            if split in raw and data_args.label_column in raw[split].column_names:
                check_labels(raw, split, data_args.label_column, labels)
    return data_args, training_args, raw


def test_readme_names_each_public_dataset():
    names = {argv[argv.index("--dataset_name") + 1] for argv in readme_commands()}
    assert names == {"stanfordnlp/sst2", "bentrevett/multi30k", "knkarthick/dialogsum", "rajpurkar/squad"}


@pytest.mark.parametrize("argv", readme_commands(), ids=lambda argv: argv[2])
def test_readme_command_fits_its_dataset(argv, monkeypatch, tmp_path):
    calls = _serve(monkeypatch)
    module, flags = argv[2], argv[3:]
    flags[flags.index("--output_dir") + 1] = str(tmp_path / "out")
    data_args, training_args, raw = _data_path(module, flags)
    assert calls == [(data_args.dataset_name, data_args.dataset_config_name)]
    assert "validation" in raw and training_args.do_train and training_args.load_best_model_at_end
    if module == "recipes.sentiment":
        assert "label" not in raw["test"].column_names  # GLUE's hidden test labels are dropped, not checked


def test_glue_sst2_config_form(monkeypatch, tmp_path):
    """The alternative the README names for SST-2: --dataset_name glue --dataset_config_name sst2."""
    calls = _serve(monkeypatch)
    _data_path("recipes.sentiment", ["--dataset_name", "glue", "--dataset_config_name", "sst2", "--text_column",
                                     "sentence", "--output_dir", str(tmp_path), "--do_train"])
    assert calls == [("glue", "sst2")]
