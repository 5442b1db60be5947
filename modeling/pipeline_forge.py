"""Pipelines for the tasks transformers 5 no longer ships, for Forge models.

This file is copied flat into every fine-tuned model folder and named in its ``config.json`` under
``custom_pipelines``, so that on a machine without Forge

    pipeline("summarization", model="user/forge-sum", trust_remote_code=True)

works as transformers 4 users remember (the custom-task branch of ``pipeline()`` runs before its
removed-task check). It imports only transformers, torch and numpy: no other Forge file.

In-process, ``register_pipelines()`` (called by ``import modeling``) makes the same classes available under
names transformers 5 accepts: ``forge-summarization``, ``forge-translation``, ``forge-text2text-generation``,
``forge-question-answering`` and ``semantic-role-labeling``.

The span logic lives in plain functions that the recipes reuse for evaluation, so the numbers in a model
card come from the same code a user runs:
- ``decode_qa_spans``: n-best answer spans over stride windows, with the null answer at token 0.
- ``encode_srl_words`` / ``bio_to_spans``: the SRL input format (``<pred>`` ... ``</pred>`` around the
  predicate word, as ``recipes/srl.py`` trains) and BIO decoding.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np
import torch
from transformers import Pipeline, TextClassificationPipeline, TokenClassificationPipeline
from transformers.pipelines.base import ChunkPipeline
from transformers.utils import logging

logger = logging.get_logger(__name__)

PREDICATE_START = "<pred>"
PREDICATE_END = "</pred>"
# The null ("no answer") span of a QA window: Forge encoder input has no [CLS], so the first token plays
# that role (as in transformers' run_qa when the tokenizer has no cls token).
QA_NULL_INDEX = 0


# ---------------------------------------------------------------------------------------------------------
# Text-to-text generation: summarization, translation, and the base class for span-corruption checkpoints
# ---------------------------------------------------------------------------------------------------------


def _max_input_length(pipeline: Pipeline) -> int | None:
    """The longest input worth encoding: the tokenizer's limit, capped by learned position embeddings."""
    limits = []
    model_max = getattr(pipeline.tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and model_max < 1_000_000:
        limits.append(model_max)
    config = pipeline.model.config
    if getattr(config, "position_embedding_type", None) == "learned" and getattr(config, "max_position_embeddings", None):
        limits.append(int(config.max_position_embeddings))
    return min(limits) if limits else None


class ForgeText2TextGenerationPipeline(Pipeline):
    """Text in, generated text out, for ``ForgeForConditionalGeneration``.

    Call with a string or a list of strings, plus any ``generate()`` keyword argument (``max_new_tokens``,
    ``num_beams``, ``do_sample``, ``num_return_sequences`` ...), at construction or per call. Returns a
    list of ``{"generated_text": str}`` per input (one entry per returned sequence); a list input returns
    one such list per input, flattened to one dict per input when each has a single sequence (as
    transformers 4 did).
    """

    _pipeline_calls_generate = True
    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True
    return_name = "generated"

    def _sanitize_parameters(
        self,
        truncation: bool | None = None,
        max_input_length: int | None = None,
        return_tensors: bool | None = None,
        return_text: bool | None = None,
        skip_special_tokens: bool | None = None,
        clean_up_tokenization_spaces: bool | None = None,
        **generate_kwargs: Any,
    ) -> tuple[dict, dict, dict]:
        preprocess_params: dict[str, Any] = {}
        if truncation is not None:
            preprocess_params["truncation"] = truncation
        if max_input_length is not None:
            preprocess_params["max_input_length"] = max_input_length
        postprocess_params: dict[str, Any] = {}
        if return_tensors is not None:
            postprocess_params["return_tensors"] = return_tensors
        if return_text is not None:
            postprocess_params["return_tensors"] = not return_text
        if skip_special_tokens is not None:
            postprocess_params["skip_special_tokens"] = skip_special_tokens
        if clean_up_tokenization_spaces is not None:
            postprocess_params["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        return preprocess_params, generate_kwargs, postprocess_params

    def __call__(self, inputs: str | list[str], **kwargs: Any) -> list[dict] | list[list[dict]]:
        """Generate for one text or a list of texts (see the class docstring for the output)."""
        result = super().__call__(inputs, **kwargs)
        if isinstance(inputs, list) and all(isinstance(r, list) and len(r) == 1 for r in result):
            return [r[0] for r in result]
        return result

    def preprocess(self, text: str, truncation: bool = True, max_input_length: int | None = None) -> dict:
        if not isinstance(text, str):
            raise TypeError(f"{type(self).__name__} takes a string or a list of strings, got {type(text).__name__}.")
        prefix = getattr(self, "prefix", None) or ""
        max_length = max_input_length or _max_input_length(self)
        return self.tokenizer(
            prefix + text, return_tensors="pt", truncation=truncation and max_length is not None, max_length=max_length
        )

    def _forward(self, model_inputs: dict, **generate_kwargs: Any) -> dict:
        batch = model_inputs["input_ids"].shape[0]
        generate_kwargs = self._prepare_generate_kwargs(generate_kwargs)
        output_ids = self.model.generate(
            input_ids=model_inputs["input_ids"], attention_mask=model_inputs["attention_mask"], **generate_kwargs
        )
        # (batch * num_return_sequences, time) -> (batch, num_return_sequences, time)
        return {"output_ids": output_ids.reshape(batch, output_ids.shape[0] // batch, -1)}

    def postprocess(
        self,
        model_outputs: dict,
        return_tensors: bool = False,
        skip_special_tokens: bool = True,
        clean_up_tokenization_spaces: bool = False,
    ) -> list[dict]:
        records = []
        for ids in model_outputs["output_ids"][0]:
            if return_tensors:
                records.append({f"{self.return_name}_token_ids": ids})
            else:
                text = self.tokenizer.decode(
                    ids, skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=clean_up_tokenization_spaces
                )
                records.append({f"{self.return_name}_text": text})
        return records


class ForgeSummarizationPipeline(ForgeText2TextGenerationPipeline):
    """Summarize text: returns ``[{"summary_text": str}]`` per input."""

    return_name = "summary"


class ForgeTranslationPipeline(ForgeText2TextGenerationPipeline):
    """Translate text in the direction the model was trained for: returns ``[{"translation_text": str}]``."""

    return_name = "translation"


# ---------------------------------------------------------------------------------------------------------
# Extractive question answering
# ---------------------------------------------------------------------------------------------------------


def _trim_span(context: str, start: int, end: int) -> tuple[int, int]:
    """Drop the whitespace byte-level tokens carry at their edges, so the answer slices cleanly."""
    while start < end and context[start].isspace():
        start += 1
    while end > start and context[end - 1].isspace():
        end -= 1
    return start, end


def decode_qa_spans(
    start_logits: Sequence[Sequence[float]],
    end_logits: Sequence[Sequence[float]],
    offsets: Sequence[Sequence[tuple[int, int] | None]],
    context: str,
    *,
    top_k: int = 1,
    n_best_size: int = 20,
    max_answer_len: int = 30,
    handle_impossible_answer: bool = False,
    null_score_diff_threshold: float = 0.0,
) -> list[dict[str, Any]]:
    """Best answer spans of one example whose context was split into stride windows.

    Args:
        start_logits, end_logits: one 1-D array per window (padding may follow; it is cut to the window's
            ``offsets`` length).
        offsets: per window and token, the ``(start, end)`` character span in ``context`` for context tokens,
            None for question and special tokens (so answers never come from them).
        context: the context string the offsets point into.
        top_k: number of answers returned.
        n_best_size: start and end candidates kept per window before pairing.
        max_answer_len: longest answer, in tokens.
        handle_impossible_answer: also rank the null answer (score of token 0, the lowest over windows);
            it wins when it beats the best span by more than ``null_score_diff_threshold``.
        null_score_diff_threshold: margin (in logits) the null answer needs over the best span.

    Returns:
        Up to ``top_k`` dicts ``{"score", "start", "end", "answer"}``, best first, with
        ``answer == context[start:end]``; the null answer is ``{"answer": "", "start": 0, "end": 0}``.
        ``score`` is a softmax over the ranked candidates' logit sums.
    """
    best: dict[tuple[int, int], float] = {}
    null_score = None
    for window_start, window_end, window_offsets in zip(start_logits, end_logits, offsets):
        length = len(window_offsets)
        starts = np.asarray(window_start, dtype=np.float64)[:length]
        ends = np.asarray(window_end, dtype=np.float64)[:length]
        window_null = starts[QA_NULL_INDEX] + ends[QA_NULL_INDEX]
        null_score = window_null if null_score is None else min(null_score, window_null)
        context_tokens = np.array([i for i, span in enumerate(window_offsets) if span is not None], dtype=np.int64)
        if context_tokens.size == 0:
            continue
        top_starts = context_tokens[np.argsort(-starts[context_tokens], kind="stable")[:n_best_size]]
        top_ends = context_tokens[np.argsort(-ends[context_tokens], kind="stable")[:n_best_size]]
        for i in top_starts:
            for j in top_ends:
                if j < i or j - i + 1 > max_answer_len:
                    continue
                char_start, char_end = _trim_span(context, window_offsets[i][0], window_offsets[j][1])
                if char_end <= char_start:
                    continue
                score = float(starts[i] + ends[j])
                key = (char_start, char_end)
                if score > best.get(key, -np.inf):
                    best[key] = score
    ranked = [(score, start, end) for (start, end), score in best.items()]
    if handle_impossible_answer and null_score is not None:
        ranked.append((float(null_score) - null_score_diff_threshold, 0, 0))
    if not ranked:
        return [{"score": 0.0, "start": 0, "end": 0, "answer": ""}]
    ranked.sort(key=lambda item: (-item[0], item[1], item[2]))
    scores = np.array([item[0] for item in ranked])
    probs = np.exp(scores - scores.max())
    probs /= probs.sum()
    return [
        {"score": float(p), "start": int(start), "end": int(end), "answer": context[start:end]}
        for p, (_, start, end) in zip(probs[:top_k], ranked[:top_k])
    ]


def _normalize_qa_inputs(args: tuple, kwargs: dict) -> tuple[dict | list[dict], bool]:
    """Accept the transformers 4 call forms; return (example or examples, whether a list was given)."""
    question = kwargs.pop("question", None)
    context = kwargs.pop("context", None)
    if args:
        if question is not None or context is not None:
            raise ValueError("Pass the input either positionally or as question=/context=, not both.")
        if len(args) == 2 and all(isinstance(a, (str, list)) for a in args):
            question, context = args
        else:
            data = args[0]
            if isinstance(data, dict):
                return _check_qa_example(data), False
            if isinstance(data, list) and all(isinstance(d, dict) for d in data):
                return [_check_qa_example(d) for d in data], True
            raise ValueError("Call the question-answering pipeline with question=..., context=... or a dict/list of dicts.")
    if question is None or context is None:
        raise ValueError("The question-answering pipeline needs both question= and context=.")
    if isinstance(question, str) and isinstance(context, str):
        return _check_qa_example({"question": question, "context": context}), False
    questions = [question] if isinstance(question, str) else list(question)
    contexts = [context] * len(questions) if isinstance(context, str) else list(context)
    if len(questions) != len(contexts):
        raise ValueError(f"Got {len(questions)} questions but {len(contexts)} contexts; pass one context per question.")
    return [_check_qa_example({"question": q, "context": c}) for q, c in zip(questions, contexts)], True


def _check_qa_example(example: dict) -> dict:
    for key in ("question", "context"):
        if not isinstance(example.get(key), str) or not example[key].strip():
            raise ValueError(f"Question-answering input needs a non-empty string {key!r}, got {example.get(key)!r}.")
    return {"question": example["question"], "context": example["context"]}


class ForgeQuestionAnsweringPipeline(ChunkPipeline):
    """Extractive QA with ``ForgeForQuestionAnswering`` and a fast tokenizer.

    ``qa(question=..., context=...)`` (or a dict, or lists) returns ``{"score", "start", "end", "answer"}``
    with ``context[start:end] == answer``; ``top_k > 1`` returns a list. Long contexts are read in windows
    of ``max_seq_len`` tokens overlapping by ``doc_stride``; ``handle_impossible_answer=True`` lets the
    empty answer win (see ``decode_qa_spans``).
    """

    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True
    default_input_names = "question,context"

    def __call__(self, *args: Any, **kwargs: Any) -> dict | list:
        """Answer one question or a list of them (see the class docstring)."""
        examples, _ = _normalize_qa_inputs(args, kwargs)
        return super().__call__(examples, **kwargs)

    def _sanitize_parameters(
        self,
        top_k: int | None = None,
        doc_stride: int | None = None,
        max_answer_len: int | None = None,
        max_seq_len: int | None = None,
        max_question_len: int | None = None,
        handle_impossible_answer: bool | None = None,
        null_score_diff_threshold: float | None = None,
        n_best_size: int | None = None,
        **unknown: Any,
    ) -> tuple[dict, dict, dict]:
        if unknown:
            raise TypeError(f"Unknown question-answering argument(s): {', '.join(sorted(unknown))}.")
        preprocess_params: dict[str, Any] = {}
        if doc_stride is not None:
            preprocess_params["doc_stride"] = doc_stride
        if max_seq_len is not None:
            preprocess_params["max_seq_len"] = max_seq_len
        if max_question_len is not None:
            preprocess_params["max_question_len"] = max_question_len
        postprocess_params: dict[str, Any] = {}
        if top_k is not None:
            if top_k < 1:
                raise ValueError(f"top_k must be >= 1, got {top_k}.")
            postprocess_params["top_k"] = top_k
        if max_answer_len is not None:
            if max_answer_len < 1:
                raise ValueError(f"max_answer_len must be >= 1, got {max_answer_len}.")
            postprocess_params["max_answer_len"] = max_answer_len
        if handle_impossible_answer is not None:
            postprocess_params["handle_impossible_answer"] = handle_impossible_answer
        if null_score_diff_threshold is not None:
            postprocess_params["null_score_diff_threshold"] = null_score_diff_threshold
        if n_best_size is not None:
            postprocess_params["n_best_size"] = n_best_size
        return preprocess_params, {}, postprocess_params

    def preprocess(self, example: dict, max_seq_len: int | None = None, doc_stride: int | None = None,
                   max_question_len: int = 64):
        if not getattr(self.tokenizer, "is_fast", False):
            raise ValueError("The question-answering pipeline needs a fast tokenizer (offsets and stride windows).")
        question, context = example["question"].lstrip(), example["context"]
        if max_seq_len is None:
            max_seq_len = min(384, _max_input_length(self) or 384)
        question_enc = self.tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
        if len(question_enc["input_ids"]) > max_question_len:  # cut at a token boundary, as the QA recipe does
            logger.warning("Question longer than max_question_len=%d tokens: cut.", max_question_len)
            question = question[: question_enc["offset_mapping"][max_question_len - 1][1]]
        room = max_seq_len - min(len(question_enc["input_ids"]), max_question_len) - 2  # "question </s> context </s>"
        if room < 2:
            raise ValueError(f"max_seq_len={max_seq_len} leaves no room for the context after the question; raise it.")
        doc_stride = min(128 if doc_stride is None else doc_stride, room // 2)
        encoded = self.tokenizer(
            question,
            context,
            truncation="only_second",
            max_length=max_seq_len,
            stride=doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        num_windows = len(encoded["input_ids"])
        for i in range(num_windows):
            sequence_ids = encoded.sequence_ids(i)
            window_offsets = [
                tuple(span) if seq == 1 else None for span, seq in zip(encoded["offset_mapping"][i], sequence_ids)
            ]
            yield {
                "input_ids": torch.tensor([encoded["input_ids"][i]]),
                "attention_mask": torch.tensor([encoded["attention_mask"][i]]),
                "offsets": window_offsets,
                "context": context,
                "is_last": i == num_windows - 1,
            }

    def _forward(self, inputs: dict) -> dict:
        outputs = self.model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        return {
            "start_logits": outputs.start_logits,
            "end_logits": outputs.end_logits,
            "offsets": inputs["offsets"],
            "context": inputs["context"],
            "is_last": inputs["is_last"],
        }

    def postprocess(self, all_outputs: list[dict], top_k: int = 1, max_answer_len: int = 30,
                    handle_impossible_answer: bool = False, null_score_diff_threshold: float = 0.0,
                    n_best_size: int = 20) -> dict | list[dict]:
        answers = decode_qa_spans(
            [o["start_logits"][0].float().numpy() for o in all_outputs],
            [o["end_logits"][0].float().numpy() for o in all_outputs],
            [o["offsets"] for o in all_outputs],
            all_outputs[0]["context"],
            top_k=top_k,
            n_best_size=max(n_best_size, top_k),
            max_answer_len=max_answer_len,
            handle_impossible_answer=handle_impossible_answer,
            null_score_diff_threshold=null_score_diff_threshold,
        )
        return answers[0] if top_k == 1 else answers


# ---------------------------------------------------------------------------------------------------------
# Semantic role labeling
# ---------------------------------------------------------------------------------------------------------

_WORD = re.compile(r"\S+")
_MARKED_PREDICATE = re.compile(r"\[([^\[\]\s]+)\]")


def split_words(sentence: str) -> list[tuple[str, int, int]]:
    """Whitespace words of ``sentence`` with their character spans."""
    return [(m.group(), m.start(), m.end()) for m in _WORD.finditer(sentence)]


def parse_marked_sentence(text: str) -> tuple[str, int]:
    """``"The cat [ate] fish"`` -> (``"The cat ate fish"``, 2): the plain sentence and the predicate word index."""
    marks = list(_MARKED_PREDICATE.finditer(text))
    if len(marks) != 1:
        raise ValueError(
            f"Mark exactly one predicate word with brackets, e.g. 'The cat [ate] fish' (found {len(marks)} in {text!r}), "
            "or pass predicate=<word index>."
        )
    mark = marks[0]
    sentence = text[: mark.start()] + mark.group(1) + text[mark.end() :]
    starts = [start for _, start, _ in split_words(sentence)]
    return sentence, starts.index(mark.start())


def encode_srl_words(
    tokenizer: Any,
    words: Sequence[str],
    predicate_index: int,
    marker_ids: tuple[int, int],
    max_length: int | None = None,
) -> tuple[list[int], list[int | None], bool]:
    """Encode one sentence with its predicate marked: ``The cat <pred> sat </pred> on the mat </s>``.

    Words are encoded one by one (every word after the first with its leading space, as in running text),
    so each subword knows its word; the markers go in as token ids, which keeps them out of the byte-level
    pre-tokenizer. The SRL recipe encodes its training data with this same function, so the pipeline
    reads sentences exactly as the recipe trained on them.

    Returns (input_ids, word_ids, truncated): ``word_ids[i]`` is the word of token ``i`` (None for the
    markers and ``</s>``); with ``max_length`` the sequence is cut to fit (``</s>`` kept) and
    ``truncated`` says whether any word lost tokens.
    """
    if not 0 <= predicate_index < len(words):
        raise ValueError(f"predicate index {predicate_index} is outside the sentence's {len(words)} words.")
    pieces = tokenizer([w if i == 0 else " " + w for i, w in enumerate(words)], add_special_tokens=False)["input_ids"]
    input_ids: list[int] = []
    word_ids: list[int | None] = []
    for index, ids in enumerate(pieces):
        if index == predicate_index:
            input_ids.append(marker_ids[0])
            word_ids.append(None)
        ids = ids or [tokenizer.unk_token_id]  # a word that maps to nothing still needs a position for its tag
        input_ids.extend(ids)
        word_ids.extend([index] * len(ids))
        if index == predicate_index:
            input_ids.append(marker_ids[1])
            word_ids.append(None)
    truncated = max_length is not None and len(input_ids) + 1 > max_length
    if truncated:
        input_ids, word_ids = input_ids[: max_length - 1], word_ids[: max_length - 1]
    input_ids.append(tokenizer.eos_token_id)
    word_ids.append(None)
    return input_ids, word_ids, truncated


def predicate_marker_ids(tokenizer: Any, markers: Sequence[str]) -> tuple[int, int]:
    """Ids of the two predicate markers; a clear error when the tokenizer never learned them."""
    vocab = tokenizer.get_vocab()
    missing = [m for m in markers if m not in vocab]
    if missing:
        raise ValueError(
            f"The tokenizer has no {' / '.join(missing)} token(s): this folder was not trained for semantic role "
            "labeling with those predicate markers (recipes/srl.py adds them); pass predicate_markers=(start, end) "
            "if the model used others."
        )
    return vocab[markers[0]], vocab[markers[1]]


def _split_label(label: str) -> tuple[str, str]:
    """``"B-ARGM-TMP"`` -> ("B", "ARGM-TMP"); ``"O"`` -> ("O", ""); a bare role counts as inside."""
    if label == "O" or not label:
        return "O", ""
    if len(label) > 2 and label[1] == "-" and label[0] in "BIES":
        return label[0], label[2:]
    return "I", label


def bio_to_spans(labels: Sequence[str]) -> list[tuple[str, int, int]]:
    """BIO word labels -> ``(role, first_word, last_word)`` spans (inclusive); a stray ``I-`` opens a span."""
    spans: list[tuple[str, int, int]] = []
    role, begin = None, 0
    for i, label in enumerate(list(labels) + ["O"]):
        tag, this_role = _split_label(label)
        if role is not None and (tag in ("O", "B", "S") or this_role != role):
            spans.append((role, begin, i - 1))
            role = None
        if tag != "O" and role is None:
            role, begin = this_role, i
    return spans


def bio_viterbi(scores: np.ndarray, labels: Sequence[str]) -> list[int]:
    """The best label sequence that is valid BIO: ``I-X`` only right after ``B-X`` or ``I-X``.

    ``scores``: ``(words, labels)`` log-probabilities (or logits: only their order within a row matters for
    argmax, but the path sums them, so pass log-probabilities). Per-word argmax can emit ``O I-ARG1`` or
    ``B-ARG0 I-ARG1``, spans no annotation has; this is the constrained decoding of He et al. (2017) and AllenNLP's
    SRL predictor, hand-written because it is a dozen numpy lines over at most a few hundred words.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape[0] == 0:
        return []
    parts = [_split_label(label) for label in labels]
    # only "I-X" labels whose "B-X" exists are constrained (a bare or IO-style label set decodes as argmax)
    inside = np.array([tag == "I" and str(label).startswith("I-") and f"B-{role}" in labels
                       for label, (tag, role) in zip(labels, parts)])
    # allowed[previous, current]: I-X needs B-X or I-X before it; every other label may follow anything
    allowed = np.ones((len(labels), len(labels)), dtype=bool)
    for current, (_, role) in enumerate(parts):
        if inside[current]:
            allowed[:, current] = [p_tag in ("B", "I") and p_role == role for p_tag, p_role in parts]
    penalty = np.where(allowed, 0.0, -np.inf)
    best = np.where(inside, -np.inf, scores[0])  # a sentence cannot open with I-
    back = np.zeros(scores.shape, dtype=np.int64)
    for t in range(1, scores.shape[0]):
        candidates = best[:, None] + penalty  # (previous, current)
        back[t] = candidates.argmax(axis=0)
        best = candidates.max(axis=0) + scores[t]
    path = [int(best.argmax())]
    for t in range(scores.shape[0] - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return path[::-1]


class ForgeSemanticRoleLabelingPipeline(Pipeline):
    """Semantic role labeling with ``ForgeForTokenClassification`` trained on BIO role tags.

    Inputs: ``"The cat [ate] the fish ."`` (predicate marked with brackets), or a sentence with
    ``predicate=<word index>`` (word = whitespace-separated), or a dict ``{"sentence": ..., "predicate": i}``
    (``"words": [...]`` instead of ``"sentence"`` also works); or a list of any of these.

    Output per input: ``{"sentence", "predicate": {"text", "start", "end", "index"},
    "arguments": [{"role", "text", "start", "end", "score"}], "tags": [BIO tag per word]}``, with character
    offsets into the returned ``sentence`` (the input with the brackets removed), so
    ``sentence[start:end] == text``.
    """

    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True

    def _sanitize_parameters(self, predicate: int | None = None, predicate_markers: Sequence[str] | None = None,
                             **unknown: Any) -> tuple[dict, dict, dict]:
        if unknown:
            raise TypeError(f"Unknown semantic-role-labeling argument(s): {', '.join(sorted(unknown))}.")
        preprocess_params: dict[str, Any] = {}
        if predicate is not None:
            preprocess_params["predicate"] = predicate
        if predicate_markers is not None:
            if len(predicate_markers) != 2:
                raise ValueError(f"predicate_markers must be (start, end), got {predicate_markers!r}.")
            preprocess_params["predicate_markers"] = tuple(predicate_markers)
        return preprocess_params, {}, {}

    def _parse(self, inputs: Any, predicate: int | None) -> tuple[str, list[tuple[str, int, int]], int]:
        if isinstance(inputs, dict):
            predicate = inputs.get("predicate", predicate)
            if "words" in inputs or "tokens" in inputs:
                words = list(inputs.get("words", inputs.get("tokens")))
                sentence = " ".join(words)
                inputs = sentence
            else:
                inputs = inputs.get("sentence", inputs.get("text"))
        if not isinstance(inputs, str) or not inputs.strip():
            raise ValueError(f"semantic-role-labeling needs a non-empty sentence, got {inputs!r}.")
        if predicate is None:
            sentence, predicate = parse_marked_sentence(inputs)
        else:
            sentence = inputs
        words = split_words(sentence)
        if not isinstance(predicate, int) or not 0 <= predicate < len(words):
            raise ValueError(f"predicate must be a word index in 0..{len(words) - 1}, got {predicate!r}.")
        return sentence, words, predicate

    def preprocess(self, inputs: Any, predicate: int | None = None,
                   predicate_markers: Sequence[str] | None = None) -> dict:
        sentence, words, predicate = self._parse(inputs, predicate)
        markers = predicate_markers or getattr(self.model.config, "predicate_markers", None) or (
            PREDICATE_START, PREDICATE_END)
        input_ids, word_ids, truncated = encode_srl_words(
            self.tokenizer, [w for w, _, _ in words], predicate, predicate_marker_ids(self.tokenizer, markers),
            _max_input_length(self),
        )
        if truncated:
            logger.warning("Sentence too long for the model: the words cut off are tagged 'O'.")
        firsts: list[int | None] = [None] * len(words)
        for position, word in enumerate(word_ids):
            if word is not None and firsts[word] is None:
                firsts[word] = position
        return {
            "input_ids": torch.tensor([input_ids]),
            "attention_mask": torch.ones(1, len(input_ids), dtype=torch.long),
            "first_tokens": firsts,
            "words": words,
            "sentence": sentence,
            "predicate": predicate,
        }

    def _forward(self, inputs: dict) -> dict:
        logits = self.model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
        return {"logits": logits, **{k: inputs[k] for k in ("first_tokens", "words", "sentence", "predicate")}}

    def postprocess(self, outputs: dict) -> dict:
        log_probs = torch.log_softmax(outputs["logits"][0].float(), dim=-1).numpy()
        id2label = self.model.config.id2label
        labels = [id2label[i] for i in range(len(id2label))]
        firsts = outputs["first_tokens"]
        present = [i for i, token in enumerate(firsts) if token is not None]  # words not cut off
        tags, scores = ["O"] * len(firsts), [0.0] * len(firsts)
        path = bio_viterbi(log_probs[[firsts[i] for i in present]], labels)  # the best valid BIO sequence
        for word, label in zip(present, path):
            tags[word] = labels[label]
            scores[word] = float(np.exp(log_probs[firsts[word], label]))
        words, sentence, predicate = outputs["words"], outputs["sentence"], outputs["predicate"]
        arguments = []
        for role, first, last in bio_to_spans(tags):
            if role == "V":
                continue  # the predicate itself
            start, end = words[first][1], words[last][2]
            arguments.append({
                "role": role,
                "text": sentence[start:end],
                "start": start,
                "end": end,
                "score": float(np.mean(scores[first : last + 1])),
            })
        word, start, end = words[predicate]
        return {
            "sentence": sentence,
            "predicate": {"text": word, "start": start, "end": end, "index": predicate},
            "arguments": arguments,
            "tags": tags,
        }


# ---------------------------------------------------------------------------------------------------------
# In-process registration (names transformers 5 accepts; the removed ones work from folders only)
# ---------------------------------------------------------------------------------------------------------

class ForgeTextClassificationPipeline(TextClassificationPipeline):
    """transformers' text-classification pipeline, unchanged; named in a sentiment folder's ``custom_pipelines``
    so that ``pipeline(model=FOLDER, trust_remote_code=True)`` finds the task without the Hub."""


class ForgeTokenClassificationPipeline(TokenClassificationPipeline):
    """transformers' token-classification pipeline, unchanged; named in ``custom_pipelines`` for the same reason."""


# The pipelines this file ships: pipeline task (the key a folder's ``custom_pipelines`` uses) -> (class, the Auto
# class of its model, the name ``register_pipelines`` gives it in-process). transformers 5 refuses its removed task
# names in-process, so those get a "forge-" prefix. Hub-folder export and the task registry read this table.
FORGE_PIPELINES: dict[str, tuple[type, str, str]] = {
    "text2text-generation": (ForgeText2TextGenerationPipeline, "AutoModelForSeq2SeqLM", "forge-text2text-generation"),
    "summarization": (ForgeSummarizationPipeline, "AutoModelForSeq2SeqLM", "forge-summarization"),
    "translation": (ForgeTranslationPipeline, "AutoModelForSeq2SeqLM", "forge-translation"),
    "question-answering": (ForgeQuestionAnsweringPipeline, "AutoModelForQuestionAnswering", "forge-question-answering"),
    "semantic-role-labeling": (ForgeSemanticRoleLabelingPipeline, "AutoModelForTokenClassification",
                               "semantic-role-labeling"),
    # transformers still ships these two; the entries (thin subclasses of its own pipelines) make a folder name its
    # task, so `pipeline(model=FOLDER, trust_remote_code=True)` works without a task, offline, as for the tasks above.
    "text-classification": (ForgeTextClassificationPipeline, "AutoModelForSequenceClassification",
                            "forge-text-classification"),
    "token-classification": (ForgeTokenClassificationPipeline, "AutoModelForTokenClassification",
                             "forge-token-classification"),
}
IN_PROCESS_TASKS = {name: (pipeline_class, auto_class) for pipeline_class, auto_class, name in FORGE_PIPELINES.values()}


def register_pipelines() -> None:
    """Register the Forge pipelines with transformers' ``PIPELINE_REGISTRY`` under ``IN_PROCESS_TASKS`` names."""
    import transformers
    from transformers.pipelines import PIPELINE_REGISTRY

    for task, (pipeline_class, auto_class) in IN_PROCESS_TASKS.items():
        if PIPELINE_REGISTRY.supported_tasks.get(task, {}).get("impl") is pipeline_class:
            continue
        PIPELINE_REGISTRY.register_pipeline(task, pipeline_class=pipeline_class, pt_model=getattr(transformers, auto_class), type="text")


__all__ = [
    "FORGE_PIPELINES",
    "ForgeQuestionAnsweringPipeline",
    "ForgeSemanticRoleLabelingPipeline",
    "ForgeSummarizationPipeline",
    "ForgeText2TextGenerationPipeline",
    "ForgeTextClassificationPipeline",
    "ForgeTokenClassificationPipeline",
    "ForgeTranslationPipeline",
    "IN_PROCESS_TASKS",
    "PREDICATE_END",
    "PREDICATE_START",
    "QA_NULL_INDEX",
    "bio_to_spans",
    "decode_qa_spans",
    "encode_srl_words",
    "parse_marked_sentence",
    "predicate_marker_ids",
    "register_pipelines",
    "split_words",
]
