"""pipeline() on Forge folders, as a user without Forge installed meets them.

Every task runs in ONE fresh Python process where Forge is not importable (site-packages only, no
``.pth`` files), on copies of tiny trained folders, with ``trust_remote_code=True``; the tests then check
the outputs' format and that every character offset slices the input text. The span helpers that the
recipes share with the pipelines get unit tests here too.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from hub_folders import NER, SENTIMENT, build_folders, copy_folder, load_hub_upload

pytestmark = pytest.mark.xdist_group("forge_hub_folders")

CONTEXT = ("Daniel Stone was born in 1883 in the village of Pelton. In 1928 his folding bicycle won the "
           "Hartley Award. Stone died in 1967 and is buried in Pelton.")
SUMMARY_SOURCE = ("The city council met on Tuesday. After a long debate, the members agreed to spend more money on "
                  "buses and trains and less on new roads.")
SRL_SENTENCE = "The committee approved the plan on Monday ."

FRESH_SCRIPT = r'''
import json, sys
root = sys.argv[1]
out = {}
try:
    import modeling  # noqa: F401
    out["forge_importable"] = True
except ImportError as err:
    out["forge_importable"] = False
from transformers import pipeline

def run(name, fn):
    try:
        out[name] = fn()
    except Exception as err:  # recorded, so one failure does not hide the others
        out[name] = {"error": f"{type(err).__name__}: {err}"}

CONTEXT, SUMMARY_SOURCE, SRL_SENTENCE = json.loads(sys.argv[2])
summarize = pipeline("summarization", model=f"{root}/summarization", trust_remote_code=True)
run("summarization", lambda: summarize(SUMMARY_SOURCE, max_new_tokens=40))
run("summarization_batch", lambda: summarize(["Ein Mann angelt.", "Heavy rain fell."], max_new_tokens=5,
                                             num_beams=2, batch_size=2))
run("summarization_n", lambda: summarize("Heavy rain fell.", max_new_tokens=5, num_beams=3, num_return_sequences=2))
short = pipeline("summarization", model=f"{root}/summarization", trust_remote_code=True, max_new_tokens=3)
run("summarization_ids", lambda: [r["summary_token_ids"].tolist() for r in short(SUMMARY_SOURCE, return_tensors=True)])
run("summarization_class", lambda: type(summarize).__name__)

translate = pipeline("translation", model=f"{root}/translation", trust_remote_code=True)
run("translation", lambda: translate("Ein Mann angelt.", max_new_tokens=12))
run("translation_list", lambda: translate(["Ein Mann angelt.", "Ein brauner Hund schwimmt im Meer."], max_new_tokens=12))

qa = pipeline("question-answering", model=f"{root}/question-answering", trust_remote_code=True)
run("qa", lambda: qa(question="What prize did Daniel Stone win?", context=CONTEXT))
run("qa_top3", lambda: qa(question="What prize did Daniel Stone win?", context=CONTEXT, top_k=3))
run("qa_windows", lambda: qa(question="What prize did Daniel Stone win?", context=CONTEXT, max_seq_len=32,
                             doc_stride=8, top_k=20, max_answer_len=6))
run("qa_null", lambda: qa(question="What prize did Daniel Stone win?", context=CONTEXT,
                          handle_impossible_answer=True, null_score_diff_threshold=-1e9))
run("qa_no_null", lambda: qa(question="What prize did Daniel Stone win?", context=CONTEXT,
                             handle_impossible_answer=True, null_score_diff_threshold=1e9))
run("qa_list", lambda: qa([{"question": "Where was Daniel Stone born?", "context": CONTEXT},
                           {"question": "What prize did Daniel Stone win?", "context": CONTEXT}], batch_size=2))
run("qa_broadcast", lambda: qa(question=["Where was Daniel Stone born?", "What prize did Daniel Stone win?"],
                               context=CONTEXT))

srl = pipeline("semantic-role-labeling", model=f"{root}/semantic-role-labeling", trust_remote_code=True)
words = SRL_SENTENCE.split()
marked = " ".join(f"[{w}]" if i == 2 else w for i, w in enumerate(words))
run("srl_marked", lambda: srl(marked))
run("srl_index", lambda: srl(SRL_SENTENCE, predicate=2))
run("srl_list", lambda: srl([{"sentence": SRL_SENTENCE, "predicate": 2}, {"words": words, "predicate": 2}]))

classify = pipeline("text-classification", model=f"{root}/text-classification", trust_remote_code=True)
run("text_classification", lambda: classify(json.loads(sys.argv[3])))
run("text_classification_all", lambda: classify("pointless and messy .", top_k=None))

for strategy in ("none", "simple", "first", "average", "max"):
    tagger = pipeline("token-classification", model=f"{root}/token-classification", trust_remote_code=True,
                      aggregation_strategy=strategy)
    run(f"ner_{strategy}", lambda: [{k: (float(v) if k == "score" else v) for k, v in e.items()}
                                    for e in tagger(json.loads(sys.argv[4]))])

# No task given: every folder's config names its pipeline (custom_pipelines), so pipeline() finds it offline.
import os
NO_TASK_INPUTS = {
    "summarization": (SUMMARY_SOURCE,), "translation": ("Ein Mann angelt.",),
    "question-answering": ({"question": "What prize did Daniel Stone win?", "context": CONTEXT},),
    "semantic-role-labeling": (SRL_SENTENCE.replace("approved", "[approved]"),),
    "text-classification": ("what a wonderful and touching film .",),
    "token-classification": ("Ada Lovelace was born in London .",),
}
for name in sorted(os.listdir(root)):
    def no_task(name=name):
        pipe = pipeline(model=f"{root}/{name}", trust_remote_code=True)
        return {"task": pipe.task, "class": type(pipe).__name__, "output": pipe(*NO_TASK_INPUTS[name])}
    run(f"no_task/{name}", no_task)
print(json.dumps(out, default=str))
'''


@pytest.fixture(scope="session")
def folders(tmp_path_factory):
    return build_folders(tmp_path_factory.mktemp("forge_folders"))


@pytest.fixture(scope="module")
def fresh(folders, tmp_path_factory):
    """Run every pipeline once in a fresh process without Forge, on copies of the folders."""
    elsewhere = tmp_path_factory.mktemp("downloaded")
    for folder in folders.values():
        copy_folder(folder, elsewhere)
    ner_text = " ".join(NER[0][0])
    proc = load_hub_upload().run_python_without_forge(
        FRESH_SCRIPT,
        str(elsewhere),
        json.dumps([CONTEXT, SUMMARY_SOURCE, SRL_SENTENCE]),
        json.dumps([text for text, _ in SENTIMENT[:2] + SENTIMENT[3:5]]),
        json.dumps(ner_text),
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    errors = {k: v["error"] for k, v in results.items() if isinstance(v, dict) and "error" in v}
    assert not errors, errors
    return results


def _check_answer(answer: dict, context: str) -> None:
    assert set(answer) == {"score", "start", "end", "answer"}
    assert 0.0 <= answer["score"] <= 1.0
    assert context[answer["start"] : answer["end"]] == answer["answer"]
    if answer["answer"]:
        assert answer["answer"] == answer["answer"].strip()


def test_fresh_process_cannot_import_forge(fresh):
    assert fresh["forge_importable"] is False
    assert fresh["summarization_class"] == "ForgeSummarizationPipeline"


def test_summarization_single_batch_and_generation_kwargs(fresh):
    (single,) = fresh["summarization"]
    assert single["summary_text"].startswith("The council")  # the tiny model overfitted this pair
    batch = fresh["summarization_batch"]
    assert len(batch) == 2 and all(set(r) == {"summary_text"} for r in batch)
    assert len(fresh["summarization_n"]) == 2  # num_return_sequences
    (ids,) = fresh["summarization_ids"]  # max_new_tokens=3 given at construction
    assert 1 < len(ids) <= 4  # decoder start + at most 3 new tokens


def test_translation(fresh):
    (single,) = fresh["translation"]
    assert single["translation_text"].startswith("A man")
    assert [set(r) for r in fresh["translation_list"]] == [{"translation_text"}] * 2


def test_question_answering_offsets_and_top_k(fresh):
    answer = fresh["qa"]
    _check_answer(answer, CONTEXT)
    assert answer["answer"] == "the Hartley Award"
    top3 = fresh["qa_top3"]
    assert len(top3) == 3 and top3[0] == answer
    for a in top3:
        _check_answer(a, CONTEXT)
    assert [a["score"] for a in top3] == sorted((a["score"] for a in top3), reverse=True)
    assert len({(a["start"], a["end"]) for a in top3}) == 3


def test_question_answering_stride_windows(fresh):
    answers = fresh["qa_windows"]
    for a in answers:
        _check_answer(a, CONTEXT)
    # a 32-token window holds well under half of this context: spans past it prove later windows were read
    # and their offsets mapped back into the whole context
    assert max(a["start"] for a in answers) > len(CONTEXT) // 2
    assert min(a["start"] for a in answers) < len(CONTEXT) // 3


def test_question_answering_impossible_answer_and_lists(fresh):
    assert fresh["qa_null"] == {"score": pytest.approx(1.0), "start": 0, "end": 0, "answer": ""}
    assert fresh["qa_no_null"]["answer"] == "the Hartley Award"
    assert [a["answer"] for a in fresh["qa_list"]] == ["the village of Pelton", "the Hartley Award"]
    # batch_size=2 pads the shorter question: same spans, scores equal up to float noise
    for unbatched, batched in zip(fresh["qa_broadcast"], fresh["qa_list"]):
        assert {**unbatched, "score": pytest.approx(batched["score"], abs=1e-5)} == batched


def test_semantic_role_labeling(fresh):
    result = fresh["srl_marked"]
    assert result == fresh["srl_index"]  # "[approved]" and predicate=2 mean the same
    assert result["sentence"] == SRL_SENTENCE
    assert result["predicate"] == {"text": "approved", "start": 14, "end": 22, "index": 2}
    assert len(result["tags"]) == len(SRL_SENTENCE.split())
    for arg in result["arguments"]:
        assert SRL_SENTENCE[arg["start"] : arg["end"]] == arg["text"]
        assert 0.0 <= arg["score"] <= 1.0
    assert {(a["role"], a["text"]) for a in result["arguments"]} == {
        ("ARG0", "The committee"), ("ARG1", "the plan"), ("ARGM-TMP", "on Monday")}
    assert fresh["srl_list"] == [result, result]


def test_text_classification(fresh):
    results = fresh["text_classification"]
    assert [r["label"] for r in results] == ["positive", "positive", "negative", "negative"]
    scores = fresh["text_classification_all"]
    assert {s["label"] for s in scores} == {"negative", "positive"}
    assert sum(s["score"] for s in scores) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_token_classification_aggregation(fresh, strategy):
    text = " ".join(NER[0][0])
    entities = fresh[f"ner_{strategy}"]
    assert entities
    key = "entity" if strategy == "none" else "entity_group"
    for entity in entities:
        assert 0 <= entity["start"] <= entity["end"] <= len(text)
        assert 0.0 <= entity["score"] <= 1.0
        label = entity[key].split("-")[-1]
        assert label in {"PER", "LOC"}
    if strategy == "first":  # word-level aggregation recovers the whole names
        found = {(e["entity_group"], text[e["start"] : e["end"]]) for e in entities if e["end"] > e["start"]}
        assert {("PER", "Ada Lovelace"), ("LOC", "London")} <= found


# ---- in-process: registered names, and the span helpers the recipes import ------------------------------


def test_in_process_registered_names(folders):
    from transformers import pipeline
    from transformers.pipelines import PIPELINE_REGISTRY

    import modeling  # noqa: F401  (registers the forge-* tasks)

    tasks = set(PIPELINE_REGISTRY.get_supported_tasks())
    assert {"forge-summarization", "forge-translation", "forge-question-answering",
            "semantic-role-labeling", "forge-text2text-generation"} <= tasks
    qa = pipeline("forge-question-answering", model=str(folders["question-answering"]))
    assert qa(question="Where was Daniel Stone born?", context=CONTEXT)["answer"] == "the village of Pelton"
    summarize = pipeline("forge-summarization", model=str(folders["summarization"]))
    assert summarize(SUMMARY_SOURCE, max_new_tokens=3)[0]["summary_text"]


def test_decode_qa_spans_across_windows():
    from modeling.pipeline_forge import decode_qa_spans

    context = "alpha beta gamma delta"
    # window 1 covers "alpha beta", window 2 "beta gamma delta"; the best span lives in window 2
    offsets = [[None, (0, 5), (5, 10), None], [None, (5, 10), (10, 16), (16, 22), None]]
    start = [np.array([0.0, 1.0, 0.5, 0.0]), np.array([0.0, 0.2, 4.0, 0.1, 0.0])]
    end = [np.array([0.0, 0.3, 1.0, 0.0]), np.array([0.0, 0.1, 0.2, 3.0, 0.0])]
    answers = decode_qa_spans(start, end, offsets, context, top_k=3)
    assert answers[0]["answer"] == "gamma delta" and (answers[0]["start"], answers[0]["end"]) == (11, 22)
    assert all(context[a["start"] : a["end"]] == a["answer"] for a in answers)
    assert decode_qa_spans(start, end, offsets, context, max_answer_len=1)[0]["answer"] == "gamma"
    # null answer: token 0 scores 3 + 3 in both windows, above every span
    start[0][0] = start[1][0] = end[0][0] = end[1][0] = 5.0
    assert decode_qa_spans(start, end, offsets, context, handle_impossible_answer=True)[0]["answer"] == ""
    assert decode_qa_spans(start, end, offsets, context)[0]["answer"] == "gamma delta"


def test_srl_helpers(folders):
    from modeling.pipeline_forge import bio_to_spans, encode_srl_words, parse_marked_sentence, predicate_marker_ids
    from transformers import AutoTokenizer

    assert parse_marked_sentence("The cat [ate] fish .") == ("The cat ate fish .", 2)
    with pytest.raises(ValueError, match="exactly one"):
        parse_marked_sentence("The [cat] [ate] fish")
    tok = AutoTokenizer.from_pretrained(folders["semantic-role-labeling"])
    markers = predicate_marker_ids(tok, ("<pred>", "</pred>"))
    words = ["The", "cat", "ate", "fish"]
    ids, word_ids, truncated = encode_srl_words(tok, words, 2, markers)
    assert tok.decode(ids) == "The cat<pred> ate</pred> fish</s>" and not truncated
    assert [w for w in word_ids if w is not None] == sorted(w for w in word_ids if w is not None)
    assert word_ids[ids.index(markers[0]) + 1] == 2 and word_ids[-1] is None
    cut = encode_srl_words(tok, words, 2, markers, max_length=4)
    assert len(cut[0]) == 4 and cut[2] is True and cut[0][-1] == tok.eos_token_id
    with pytest.raises(ValueError, match="predicate markers"):
        predicate_marker_ids(AutoTokenizer.from_pretrained(folders["summarization"]), ("<pred>", "</pred>"))
    assert bio_to_spans(["B-ARG0", "I-ARG0", "B-V", "I-ARG1", "O", "B-ARGM-TMP", "I-ARGM-TMP"]) == [
        ("ARG0", 0, 1), ("V", 2, 2), ("ARG1", 3, 3), ("ARGM-TMP", 5, 6)]


def test_srl_pipeline_outputs_the_best_valid_bio_sequence(folders):
    """Per-word argmax "I-ARG0 I-ARG0 B-V I-ARG1" has no valid span start; the pipeline returns the best valid BIO
    sequence instead (the decoding the recipe's metric scores), with each word's probability of its tag."""
    import torch
    from modeling import pipeline_forge
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    folder = folders["semantic-role-labeling"]
    model = AutoModelForTokenClassification.from_pretrained(folder, trust_remote_code=True)
    srl = pipeline_forge.ForgeSemanticRoleLabelingPipeline(model=model, tokenizer=AutoTokenizer.from_pretrained(folder))
    label2id = model.config.label2id
    wanted = [("I-ARG0", "B-ARG0"), ("I-ARG0", "I-ARG0"), ("B-V", "B-V"), ("I-ARG1", "B-ARG1")]  # (argmax, runner-up)
    logits = torch.full((1, 6, len(label2id)), -5.0)
    for word, (top, second) in enumerate(wanted):
        logits[0, word + 1, label2id[second]] = 2.0
        logits[0, word + 1, label2id[top]] = 3.0 if top != second else 4.0
    sentence = "The cat ate fish"
    words = [("The", 0, 3), ("cat", 4, 7), ("ate", 8, 11), ("fish", 12, 16)]
    out = srl.postprocess({"logits": logits, "first_tokens": [1, 2, 3, 4], "words": words, "sentence": sentence,
                           "predicate": 2})
    assert out["tags"] == ["B-ARG0", "I-ARG0", "B-V", "B-ARG1"]
    assert [(a["role"], a["text"]) for a in out["arguments"]] == [("ARG0", "The cat"), ("ARG1", "fish")]
    assert all(0.0 < a["score"] < 0.5 for a in out["arguments"][1:])  # "B-ARG1" was the runner-up, not the argmax


def test_srl_encoding_matches_the_recipe(folders):
    """The pipeline must read sentences exactly as recipes/srl.py trained on them."""
    srl_utils = pytest.importorskip("recipes.core.srl_utils")
    from modeling.pipeline_forge import encode_srl_words, predicate_marker_ids
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folders["semantic-role-labeling"])
    markers = predicate_marker_ids(tok, ("<pred>", "</pred>"))
    for words, predicate, max_length in [("The committee approved the plan on Monday .".split(), 2, None),
                                         ("Ünïcode wörds , émojis 🙂 and  tabs".split(), 0, None),
                                         ("a b c d e f g h".split(), 7, 6)]:
        assert encode_srl_words(tok, words, predicate, markers, max_length) == srl_utils.encode_srl_words(
            tok, words, predicate, markers, max_length)


def test_pipeline_without_a_task_works_for_every_folder(fresh, folders):
    """``pipeline(model=FOLDER, trust_remote_code=True)``: the folder's config names its task, for every task."""
    for name in folders:
        result = fresh[f"no_task/{name}"]
        assert result["task"] == name, result
        assert result["output"], result
    assert fresh["no_task/text-classification"]["output"][0]["label"] == "positive"
    assert fresh["no_task/question-answering"]["output"]["answer"] == "the Hartley Award"
