"""Tiny trained Forge model folders for the pipeline, card, export and upload tests.

One tokenizer is trained on the examples below with ``ForgeTokenizerFast.train_new_from_iterator``; each
task gets a forge-tiny model overfitted for a few dozen steps (so outputs are not noise) and saved with
``save_hub_folder`` plus a model card. Built once per test process (``build_folders`` memoizes) and
shared by the test files, which run in one xdist group.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

SUMMARIZATION = [
    ("The city council met on Tuesday. After a long debate, the members agreed to spend more money on buses "
     "and trains and less on new roads.", "The council will spend more on public transport."),
    ("Heavy rain fell across the north for three days. Rivers rose quickly and several villages were flooded, "
     "but nobody was hurt.", "Floods hit northern villages after days of rain."),
]
TRANSLATION = [
    ("Ein Mann angelt.", "A man is fishing."),
    ("Ein brauner Hund schwimmt im Meer.", "A brown dog is swimming in the ocean."),
]
QA = [
    {"question": "What prize did Daniel Stone win?",
     "context": "Daniel Stone was born in 1883 in the village of Pelton. In 1928 his folding bicycle won the "
                "Hartley Award. Stone died in 1967 and is buried in Pelton.",
     "answer": "the Hartley Award"},
    {"question": "Where was Daniel Stone born?",
     "context": "Daniel Stone was born in 1883 in the village of Pelton. In 1928 his folding bicycle won the "
                "Hartley Award. Stone died in 1967 and is buried in Pelton.",
     "answer": "the village of Pelton"},
]
SRL = [
    ("The doctor can carry a basket of apples with great care .".split(), 3,
     ["B-ARG0", "I-ARG0", "B-ARGM-MOD", "B-V", "B-ARG1", "I-ARG1", "I-ARG1", "I-ARG1", "B-ARGM-MNR", "I-ARGM-MNR",
      "I-ARGM-MNR", "O"]),
    ("The committee approved the plan on Monday .".split(), 2,
     ["B-ARG0", "I-ARG0", "B-V", "B-ARG1", "I-ARG1", "B-ARGM-TMP", "I-ARGM-TMP", "O"]),
]
SRL_LABELS = ["O", "B-V", "B-ARG0", "I-ARG0", "B-ARG1", "I-ARG1", "B-ARGM-MOD", "B-ARGM-MNR", "I-ARGM-MNR",
              "B-ARGM-TMP", "I-ARGM-TMP"]
SENTIMENT = [
    ("what a wonderful and touching film .", 1), ("the cast is brilliant and the script is fresh .", 1),
    ("a memorable , honest story .", 1), ("the action scenes are dull and tiresome .", 0),
    ("pointless and messy .", 0), ("tedious , even shallow .", 0),
]
NER = [
    ("Ada Lovelace was born in London .".split(), ["B-PER", "I-PER", "O", "O", "O", "B-LOC", "O"]),
    ("Alan Turing worked in Manchester .".split(), ["B-PER", "I-PER", "O", "O", "B-LOC", "O"]),
]
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]

TASKS = ("summarization", "translation", "question-answering", "semantic-role-labeling", "text-classification",
         "token-classification")
_CACHE: dict[str, Path] = {}


def load_hub_upload():
    """hub_upload.py is a script at the repository root, not a package module."""
    spec = importlib.util.spec_from_file_location("hub_upload", REPO_ROOT / "hub_upload.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _corpus() -> list[str]:
    texts = [d for d, _ in SUMMARIZATION] + [s for _, s in SUMMARIZATION]
    texts += [x for pair in TRANSLATION for x in pair] + [q["question"] + " " + q["context"] for q in QA]
    texts += [" ".join(w) for w, _, _ in SRL] + [t for t, _ in SENTIMENT] + [" ".join(w) for w, _ in NER]
    return texts * 3


def _fit(model: torch.nn.Module, batches: list[dict], steps: int, lr: float = 3e-3) -> float:
    """Overfit ``model`` on ``batches`` (cycled) with Adam; returns the last loss."""
    torch.manual_seed(0)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    loss = torch.tensor(float("nan"))
    for step in range(steps):
        loss = model(**batches[step % len(batches)]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return float(loss.detach())


def _ner_batch(tok, words, word_labels, label2id):
    """Encode running text; each word's label goes on its first token (found by character offsets)."""
    text = " ".join(words)
    enc = tok(text, return_offsets_mapping=True, return_tensors="pt")
    offsets = enc.pop("offset_mapping")[0].tolist()
    labels = torch.full_like(enc["input_ids"], -100)
    cursor = 0
    for word, label in zip(words, word_labels):
        start, end = cursor, cursor + len(word)
        first = next(i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start)
        labels[0, first] = label2id[label]
        cursor = end + 1
    return {**enc, "labels": labels}


def _srl_batch(tok, words, predicate, word_labels, label2id):
    """The SRL recipe's encoding (markers around the predicate, labels on first subwords)."""
    from modeling.pipeline_forge import encode_srl_words, predicate_marker_ids

    ids, word_ids, _ = encode_srl_words(tok, words, predicate, predicate_marker_ids(tok, ("<pred>", "</pred>")))
    labels, previous = [], None
    for word in word_ids:
        labels.append(-100 if word is None or word == previous else label2id[word_labels[word]])
        previous = word if word is not None else previous
    return {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
            "labels": torch.tensor([labels])}


def build_folders(root: Path) -> dict[str, Path]:
    """Train and save one tiny folder per task under ``root``; memoized for the test process."""
    if _CACHE:
        return dict(_CACHE)
    from modeling import (ForgeConfig, ForgeForConditionalGeneration, ForgeForQuestionAnswering,
                          ForgeForSequenceClassification, ForgeForTokenClassification)
    from recipes.publishing.cards import write_model_card
    from recipes.publishing.export import save_hub_folder
    from tokenization import ForgeTokenizerFast, add_task_tokens

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster, and the machine is shared
    try:
        folders = _build(root, ForgeConfig, ForgeForConditionalGeneration, ForgeForQuestionAnswering,
                         ForgeForSequenceClassification, ForgeForTokenClassification, write_model_card,
                         save_hub_folder, ForgeTokenizerFast, add_task_tokens)
    finally:
        torch.set_num_threads(threads)
    _CACHE.update(folders)
    return dict(folders)


def _build(root, ForgeConfig, ForgeForConditionalGeneration, ForgeForQuestionAnswering,
           ForgeForSequenceClassification, ForgeForTokenClassification, write_model_card, save_hub_folder,
           ForgeTokenizerFast, add_task_tokens) -> dict[str, Path]:
    torch.manual_seed(0)
    tok = ForgeTokenizerFast().train_new_from_iterator(_corpus(), vocab_size=460, show_progress=False)
    tok_dir = root / "tokenizer"
    tok.save_pretrained(tok_dir)

    def config(**kwargs):
        return ForgeConfig.from_pretrained("forge-tiny", vocab_size=len(tok), dropout=0.0, **kwargs)

    def labelled(labels):
        return {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                "label2id": {label: i for i, label in enumerate(labels)}}

    folders: dict[str, Path] = {}

    # One seq2seq model learns both the summaries and the translations; saved once per task.
    seq2seq = ForgeForConditionalGeneration(config())
    pairs = SUMMARIZATION + TRANSLATION
    batch = tok([s for s, _ in pairs], text_target=[t for _, t in pairs], return_tensors="pt", padding=True)
    batch["labels"][batch["labels"] == tok.pad_token_id] = -100
    _fit(seq2seq, [dict(batch)], steps=80, lr=1e-2)
    for task in ("summarization", "translation"):
        folders[task] = save_hub_folder(seq2seq, tok, root / task, task=task)

    qa_model = ForgeForQuestionAnswering(config())
    qa_batches = []
    for ex in QA:
        enc = tok(ex["question"], ex["context"], return_offsets_mapping=True, return_tensors="pt")
        start_char = ex["context"].index(ex["answer"])
        end_char = start_char + len(ex["answer"])
        seq = enc.sequence_ids(0)
        offsets = enc.pop("offset_mapping")[0].tolist()
        ctx = [i for i, s in enumerate(seq) if s == 1]
        start = next(i for i in ctx if offsets[i][1] > start_char)
        end = max(i for i in ctx if offsets[i][0] < end_char)
        qa_batches.append({**enc, "start_positions": torch.tensor([start]), "end_positions": torch.tensor([end])})
    _fit(qa_model, qa_batches, steps=60, lr=1e-2)
    folders["question-answering"] = save_hub_folder(qa_model, tok, root / "question-answering", task="question-answering")

    srl_tok = ForgeTokenizerFast.from_pretrained(tok_dir)
    srl_model = ForgeForTokenClassification(config(**labelled(SRL_LABELS)))
    add_task_tokens(srl_tok, srl_model, ["<pred>", "</pred>"])
    label2id = srl_model.config.label2id
    srl_batches = [_srl_batch(srl_tok, w, p, tags, label2id) for w, p, tags in SRL]
    _fit(srl_model, srl_batches, steps=60, lr=1e-2)
    folders["semantic-role-labeling"] = save_hub_folder(
        srl_model, srl_tok, root / "semantic-role-labeling", task="semantic-role-labeling")

    cls_model = ForgeForSequenceClassification(config(**labelled(["negative", "positive"])))
    enc = tok([t for t, _ in SENTIMENT], return_tensors="pt", padding=True)
    _fit(cls_model, [{**enc, "labels": torch.tensor([y for _, y in SENTIMENT])}], steps=40, lr=1e-2)
    folders["text-classification"] = save_hub_folder(cls_model, tok, root / "text-classification",
                                                     task="text-classification")

    ner_model = ForgeForTokenClassification(config(**labelled(NER_LABELS)))
    ner_batches = [_ner_batch(tok, w, tags, ner_model.config.label2id) for w, tags in NER]
    _fit(ner_model, ner_batches, steps=50, lr=1e-2)
    folders["token-classification"] = save_hub_folder(ner_model, tok, root / "token-classification",
                                                      task="token-classification")

    for task, folder in folders.items():
        write_model_card(folder, model_name=f"forge-tiny-{task}", task=task, metrics={"eval_loss": 0.5},
                         dataset_name="test examples", training_budget="a few steps on CPU",
                         hyperparameters={"learning_rate": 0.01})
    return folders


def copy_folder(folder: Path, dest_root: Path) -> Path:
    """A copy of a model folder somewhere else (a user's download), returned as an absolute path."""
    dest = dest_root / folder.name
    shutil.copytree(folder, dest)
    return dest.resolve()


def read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
