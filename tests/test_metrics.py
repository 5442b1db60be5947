"""The local evaluate modules agree with their reference libraries, and SQuAD EM/F1 on hand-checked cases."""

import pytest
import sacrebleu
from rouge_score import rouge_scorer
from seqeval.metrics import classification_report, f1_score as seqeval_f1
from sklearn.metrics import accuracy_score, f1_score

from recipes.core.metrics import flatten_seqeval, load_metric

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_bleu_chrf_match_sacrebleu():
    hyps = ["A man is riding a horse.", "Two dogs play in the snow!", "the cat"]
    refs = ["A man rides a horse.", "Two dogs are playing in snow!", "The cat sat."]
    result = load_metric("bleu_chrf").compute(predictions=hyps, references=[[r] for r in refs])
    assert result["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert result["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    perfect = load_metric("bleu_chrf").compute(predictions=refs, references=[[r] for r in refs])
    assert perfect["bleu"] == pytest.approx(100.0)


def test_rouge_matches_rouge_score_and_splits_sentences_for_lsum():
    preds = ["The cat sat on the mat. It was happy.", "Person1 asks for help"]
    refs = ["A cat sat on a mat. The cat was happy!", "#Person1# asks #Person2# for help with a form."]
    result = load_metric("rouge").compute(predictions=preds, references=refs)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    newline = [
        ("The cat sat on the mat.\nIt was happy.", "A cat sat on a mat.\nThe cat was happy!"),
        (preds[1], refs[1]),
    ]
    expected = [scorer.score(r, p) for p, r in newline]
    for key in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        mean = 100 * sum(s[key].fmeasure for s in expected) / len(expected)
        assert result[key] == pytest.approx(mean), key
    # sentence splitting changes Lsum but not L
    assert result["rougeLsum"] != pytest.approx(result["rougeL"])


def test_seqeval_matches_library_and_excludes_predicate():
    refs = [["B-ARG0", "I-ARG0", "B-V", "B-ARG1", "O"], ["B-ARGM-TMP", "O", "B-V", "B-ARG1", "I-ARG1"]]
    preds = [["B-ARG0", "I-ARG0", "B-V", "O", "O"], ["B-ARGM-TMP", "O", "O", "B-ARG1", "I-ARG1"]]
    result = load_metric("seqeval").compute(predictions=preds, references=refs)
    # V removed from both sides: 3 gold arg spans, 3 predicted... ARG0, ARGM-TMP, ARG1(2nd) correct; ARG1(1st) missed
    no_v = lambda seqs: [[("O" if t.endswith("-V") else t) for t in s] for s in seqs]  # noqa: E731
    assert result["f1"] == pytest.approx(100 * seqeval_f1(no_v(refs), no_v(preds)))
    assert result["precision"] == pytest.approx(100.0)
    assert result["recall"] == pytest.approx(75.0)
    assert "V" not in result
    report = classification_report(no_v(refs), no_v(preds), output_dict=True)
    assert result["ARG1"]["f1"] == pytest.approx(100 * report["ARG1"]["f1-score"])
    assert flatten_seqeval(result)["f1_ARGM-TMP"] == pytest.approx(100.0)


def test_classification_matches_sklearn():
    refs = [0, 1, 2, 2, 1, 0, 2]
    preds = [0, 2, 2, 2, 1, 1, 0]
    result = load_metric("classification").compute(predictions=preds, references=refs)
    assert result["accuracy"] == pytest.approx(100 * accuracy_score(refs, preds))
    assert result["macro_f1"] == pytest.approx(100 * f1_score(refs, preds, average="macro"))


@pytest.mark.parametrize(
    "prediction, golds, em, f1",
    [
        ("Denver Broncos", ["Denver Broncos"], 100.0, 100.0),
        ("the Denver Broncos!", ["Denver Broncos"], 100.0, 100.0),  # article + punctuation normalised away
        ("Broncos", ["Denver Broncos"], 0.0, 100 * 2 * (1 * 0.5) / 1.5),  # p=1, r=1/2 -> F1 = 2/3
        ("in 1867 and 1868", ["1867"], 0.0, 100 * 2 * (0.25 * 1) / 1.25),  # p=1/4, r=1 -> F1 = 0.4
        ("Paris", ["London", "paris"], 100.0, 100.0),  # best of several gold answers
        ("blue", ["red"], 0.0, 0.0),
        ("", [], 100.0, 100.0),  # v2: unanswerable, predicted no answer
        ("Paris", [], 0.0, 0.0),  # v2: unanswerable, predicted an answer
    ],
)
def test_squad_hand_checked(prediction, golds, em, f1):
    metric = load_metric("squad")
    result = metric.compute(
        predictions=[{"id": "q", "prediction_text": prediction}],
        references=[{"id": "q", "answers": {"text": golds, "answer_start": [0] * len(golds)}}],
    )
    assert result["exact_match"] == pytest.approx(em)
    assert result["f1"] == pytest.approx(f1)
    assert ("NoAns_total" in result) == (not golds)


def test_squad_averages_over_questions():
    metric = load_metric("squad")
    result = metric.compute(
        predictions=[{"id": "a", "prediction_text": "x y"}, {"id": "b", "prediction_text": "z"}],
        references=[
            {"id": "a", "answers": {"text": ["x y"], "answer_start": [0]}},
            {"id": "b", "answers": {"text": ["w"], "answer_start": [0]}},
        ],
    )
    assert result == {"exact_match": 50.0, "f1": 50.0, "total": 2}


def test_generated_length_stops_at_the_first_eos_after_the_start_token():
    """Beam search fills a finished hypothesis with eos up to the batch's longest row; gen_len counts each row to
    its first eos (DialogSum reported 62.5 tokens for summaries of about 20 before). A BART-style decoder starts
    with eos itself, which is not the end; padding and -100 are never counted."""
    import numpy as np

    from recipes.core.metrics import generated_lengths

    class Tok:
        pad_token_id, eos_token_id = 0, 2

    generated = np.array([[1, 5, 6, 2, 2, 2, 2],      # Forge: <s> a b </s>, then eos filler
                          [1, 5, 6, 7, 8, 9, 2],      # full length
                          [2, 5, 2, 0, 0, -100, -100],  # BART-style start (eos), one token, end, padding
                          [1, 5, 6, 7, 8, 9, 10]])    # cut at the cap without an eos
    assert generated_lengths(Tok(), generated) == [4, 7, 3, 7]
