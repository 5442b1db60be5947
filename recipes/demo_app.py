"""A Gradio page for Forge model folders: one tab per task folder, text in, the pipeline's answer out.

This file imports only gradio and transformers (never Forge), because it is also the ``app.py`` of the
Hugging Face Space that ``save_hub_folder(..., space=...)`` writes: the model code comes from each folder
(``trust_remote_code=True``), as it does for any Hub user. ``python -m recipes.demo`` runs it locally.

Each folder's ``config.json`` names its pipeline task (``custom_pipelines``); the tab for it shows:
- text classification: the labels with their scores;
- translation, summarization, text-to-text: the generated text, with a slider for ``max_new_tokens``;
- question answering: the answer, highlighted in the context;
- semantic role labeling: the argument spans highlighted in the sentence (predicate in [brackets]);
- token classification: the entities highlighted in the text.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

import gradio as gr
from transformers import pipeline

TASK_TITLES = {
    "text-classification": "Sentiment",
    "translation": "Translation",
    "summarization": "Summarization",
    "text2text-generation": "Text to text",
    "question-answering": "Question answering",
    "semantic-role-labeling": "Semantic roles",
    "token-classification": "Token classification",
}
GENERATING = ("translation", "summarization", "text2text-generation")


def folder_task(folder: str | os.PathLike) -> str | None:
    """The pipeline task a saved folder names in its config.json (``custom_pipelines``), or None."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    tasks = list(config.get("custom_pipelines") or {})
    return tasks[0] if len(tasks) == 1 else None


def find_task_folders(root: str | os.PathLike) -> list[tuple[str, Path]]:
    """``(task, folder)`` for ``root`` itself if it is a task folder, else for its sub-folders (a main-job output)."""
    root = Path(root)
    if folder_task(root):
        return [(folder_task(root), root)]
    found = [(folder_task(child), child) for child in sorted(root.iterdir()) if child.is_dir() and folder_task(child)]
    return [(task, folder) for task, folder in found if task is not None]


def _highlight(text: str, spans: list[tuple[int, int, str]]) -> list[tuple[str, str | None]]:
    """``text`` cut into (piece, label-or-None) for gr.HighlightedText; ``spans`` are character offsets."""
    pieces, cursor = [], 0
    for start, end, label in sorted(spans):
        if start < cursor or end <= start:
            continue  # overlapping or empty span: keep the first
        if start > cursor:
            pieces.append((text[cursor:start], None))
        pieces.append((text[start:end], label))
        cursor = end
    if cursor < len(text):
        pieces.append((text[cursor:], None))
    return pieces


def _handlers(task: str, pipe: Any) -> Callable[..., Any]:
    """The function behind the tab's button: inputs as the widgets give them, output as the widgets show it."""
    if task == "text-classification":
        return lambda text: {r["label"]: float(r["score"]) for r in pipe(text, top_k=None)}
    if task in GENERATING:
        key = {"translation": "translation_text", "summarization": "summary_text"}.get(task, "generated_text")
        return lambda text, length: pipe(text, max_new_tokens=int(length))[0][key]
    if task == "question-answering":
        def answer(question: str, context: str):
            result = pipe(question=question, context=context)
            return result["answer"], _highlight(context, [(result["start"], result["end"], "answer")])
        return answer
    if task == "semantic-role-labeling":
        def roles(sentence: str):
            result = pipe(sentence)
            spans = [(a["start"], a["end"], a["role"]) for a in result["arguments"]]
            predicate = result["predicate"]
            spans.append((predicate["start"], predicate["end"], "V"))
            return _highlight(result["sentence"], spans)
        return roles
    if task == "token-classification":
        def entities(text: str):
            return _highlight(text, [(e["start"], e["end"], e["entity_group"]) for e in pipe(text)])
        return entities
    raise ValueError(f"No demo tab for task {task!r}.")


def _pipeline_for(task: str, folder: Path) -> Any:
    extra = {"aggregation_strategy": "simple"} if task == "token-classification" else {}
    return pipeline(task, model=str(folder), trust_remote_code=True, **extra)


def build_app(folders: list[tuple[str, Path]], title: str = "Forge demo") -> gr.Blocks:
    """One tab per ``(task, folder)``; widgets get ``elem_id`` ``<task>-input`` / ``<task>-output`` / ``<task>-run``."""
    if not folders:
        raise ValueError("No task folders to show: pass a Forge model folder or a main-job output folder.")
    with gr.Blocks(title=title) as app:
        gr.Markdown(f"# {title}\nForge models loaded with `pipeline(..., trust_remote_code=True)`.")
        for task, folder in folders:
            handler = _handlers(task, _pipeline_for(task, folder))
            with gr.Tab(TASK_TITLES.get(task, task)):
                gr.Markdown(f"Model folder: `{folder}`")
                run = gr.Button("Run", elem_id=f"{task}-run", variant="primary")
                if task == "question-answering":
                    question = gr.Textbox(label="Question", elem_id=f"{task}-input")
                    context = gr.Textbox(label="Context", lines=6, elem_id=f"{task}-context")
                    answer = gr.Textbox(label="Answer", elem_id=f"{task}-output")
                    shown = gr.HighlightedText(label="Answer in the context", elem_id=f"{task}-highlight")
                    run.click(handler, [question, context], [answer, shown])
                elif task in GENERATING:
                    text = gr.Textbox(label="Input", lines=4, elem_id=f"{task}-input")
                    length = gr.Slider(4, 128, value=40, step=1, label="Maximum new tokens", elem_id=f"{task}-length")
                    output = gr.Textbox(label="Output", elem_id=f"{task}-output")
                    run.click(handler, [text, length], output)
                elif task == "text-classification":
                    text = gr.Textbox(label="Text", lines=3, elem_id=f"{task}-input")
                    output = gr.Label(label="Prediction", elem_id=f"{task}-output")
                    run.click(handler, text, output)
                else:
                    hint = "Mark the predicate with [brackets]." if task == "semantic-role-labeling" else ""
                    text = gr.Textbox(label="Sentence", info=hint or None, lines=2, elem_id=f"{task}-input")
                    output = gr.HighlightedText(label="Spans", elem_id=f"{task}-output")
                    run.click(handler, text, output)
    return app


if __name__ == "__main__":  # the Space: the model folder(s) next to this file, or FORGE_MODEL (a path or repo id)
    root = os.environ.get("FORGE_MODEL") or (sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).parent))
    build_app(find_task_folders(root)).launch()
