"""QA windows and span post-processing: the gold span comes back from ideal logits, in any window."""

import numpy as np
import pytest

from recipe_helpers import train_small_tokenizer
from recipes.core.data import DataValidationError
from recipes.core.qa_utils import NULL_INDEX, check_answer_offsets, postprocess_qa_predictions, prepare_qa_features


@pytest.fixture(scope="module")
def tokenizer():
    return train_small_tokenizer()


FILLER = "The river runs past the old mill and the school near the market. "
ANSWER = "Maria Green"
LONG_CONTEXT = FILLER * 12 + f"The bridge was designed by {ANSWER} in 1883. " + FILLER * 2


def _examples(context=LONG_CONTEXT, answer=ANSWER, qid="q1"):
    start = context.index(answer) if answer else None
    answers = {"text": [answer], "answer_start": [start]} if answer else {"text": [], "answer_start": []}
    return {"id": [qid], "question": ["Who designed the bridge?"], "context": [context], "answers": [answers]}


def _ideal_logits(features):
    """Start/end logits that point at the labelled positions of each window (NULL_INDEX when absent)."""
    width = max(len(ids) for ids in features["input_ids"])
    start = np.full((len(features["input_ids"]), width), -10.0)
    end = np.full_like(start, -10.0)
    for row, (s, e) in enumerate(zip(features["start_positions"], features["end_positions"])):
        start[row, s] = 10.0
        end[row, e] = 10.0
    return start, end


def _rows(features):
    keys = list(features)
    return [dict(zip(keys, values)) for values in zip(*(features[k] for k in keys))]


def test_windows_overlap_and_labels_point_at_the_answer(tokenizer):
    feats = prepare_qa_features(_examples(), tokenizer, max_seq_length=64, doc_stride=16, max_question_length=16)
    assert len(feats["input_ids"]) >= 3  # the context needs several windows
    assert all(len(ids) <= 64 for ids in feats["input_ids"])
    labelled = [i for i, s in enumerate(feats["start_positions"]) if s != NULL_INDEX]
    assert labelled and labelled[0] >= 1, "the answer must sit in a later window, not the first"
    for i in labelled:
        offsets = feats["offset_mapping"][i]
        s, e = feats["start_positions"][i], feats["end_positions"][i]
        assert LONG_CONTEXT[offsets[s][0] : offsets[e][1]] == ANSWER
    # the question and special tokens have no offsets (never an answer)
    assert feats["offset_mapping"][0][NULL_INDEX] is None


def test_ideal_logits_recover_the_gold_span_from_a_later_window(tokenizer):
    examples = _examples()
    feats = prepare_qa_features(examples, tokenizer, max_seq_length=64, doc_stride=16, max_question_length=16)
    start, end = _ideal_logits(feats)
    answers, nbest = postprocess_qa_predictions(
        [{"id": "q1", "context": LONG_CONTEXT}], _rows(feats), start, end, n_best_size=5, max_answer_length=10
    )
    assert answers == {"q1": ANSWER}
    best = nbest["q1"][0]
    assert LONG_CONTEXT[best["start"] : best["end"]] == ANSWER


def test_answer_in_the_second_window_exactly(tokenizer):
    # place the answer so that it is cut from window 1 and lies wholly in window 2
    context = FILLER * 3 + f"The bridge was designed by {ANSWER} in 1883. " + FILLER
    feats = prepare_qa_features(
        _examples(context), tokenizer, max_seq_length=48, doc_stride=12, max_question_length=16
    )
    windows = [i for i, s in enumerate(feats["start_positions"]) if s != NULL_INDEX]
    assert 1 in windows and 0 not in windows
    start, end = _ideal_logits(feats)
    answers, _ = postprocess_qa_predictions(
        [{"id": "q1", "context": context}], _rows(feats), start, end, max_answer_length=10
    )
    assert answers["q1"] == ANSWER


def test_max_answer_length_excludes_long_spans(tokenizer):
    feats = prepare_qa_features(_examples(), tokenizer, max_seq_length=64, doc_stride=16, max_question_length=16)
    start, end = _ideal_logits(feats)
    answers, _ = postprocess_qa_predictions(
        [{"id": "q1", "context": LONG_CONTEXT}], _rows(feats), start, end, max_answer_length=1
    )
    assert answers["q1"] != ANSWER  # the two-word answer spans more than one token


def test_unanswerable_v2_null_threshold(tokenizer):
    examples = _examples(context=FILLER * 2, answer=None, qid="q2")
    feats = prepare_qa_features(examples, tokenizer, max_seq_length=64, doc_stride=16, max_question_length=16)
    assert set(feats["start_positions"]) == {NULL_INDEX}
    start, end = _ideal_logits(feats)
    start[:, 8] = 5.0  # a weaker span candidate inside the context
    end[:, 9] = 5.0
    contexts = [{"id": "q2", "context": FILLER * 2}]
    answers, _ = postprocess_qa_predictions(contexts, _rows(feats), start, end, version_2_with_negative=True)
    assert answers == {"q2": ""}
    # a high threshold makes the model answer anyway
    answers, _ = postprocess_qa_predictions(
        contexts, _rows(feats), start, end, version_2_with_negative=True, null_score_diff_threshold=100.0
    )
    assert answers["q2"] != ""


def test_answer_longer_than_any_window_is_an_error_or_dropped(tokenizer):
    long_answer = "the river runs past the old mill and the school near the market"
    context = "Start. " + long_answer + " End."
    examples = _examples(context, long_answer)
    with pytest.raises(DataValidationError, match="fits in no window"):
        prepare_qa_features(examples, tokenizer, max_seq_length=20, doc_stride=4, max_question_length=8)
    feats = prepare_qa_features(
        examples, tokenizer, max_seq_length=20, doc_stride=4, max_question_length=8, overlong_policy="drop"
    )
    assert feats["input_ids"] == []


def test_very_long_question_is_cut_not_crashing(tokenizer):
    examples = _examples()
    examples["question"] = ["Who " + "really " * 100 + "designed the bridge?"]
    feats = prepare_qa_features(examples, tokenizer, max_seq_length=64, doc_stride=16, max_question_length=16)
    assert feats["input_ids"] and all(len(ids) <= 64 for ids in feats["input_ids"])


def test_answer_offset_check():
    ok = {"context": "abc Maria", "answers": {"text": ["Maria"], "answer_start": [4]}}
    bad = {"context": "abc Maria", "answers": {"text": ["Maria"], "answer_start": [2]}}
    assert check_answer_offsets(ok, "context", "answers") is None
    assert "occurs at 4" in check_answer_offsets(bad, "context", "answers")
