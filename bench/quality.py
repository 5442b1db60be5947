"""The quality table of issue 13 in one command: pretraining, then every task with Forge and the BART control.

    python bench/quality.py --data_dir ../shared/data --runs_dir outputs/quality \
        --results bench/results/quality_cpu.jsonl                       # the full CPU table (hours; see --help)
    python bench/quality.py ... --second_seed_task sentiment           # plus a second seed on one task (spread)
    python bench/quality.py --smoke --runs_dir /tmp/q --results /tmp/q/r.jsonl   # seconds, on the sample data
    python bench/quality.py render --results bench/results/quality_cpu.jsonl     # README table + curves only

Stages: (1) a tokenizer trained on the pretraining corpus (English Wikipedia plus the German side of the
translation data, ``--pretrain_mix``); (2) pretraining of each architecture for at most
``--pretrain_minutes`` (shared by all tasks; skipped with ``--from_scratch``); (3) for every task, architecture
and seed, fine-tuning for at most ``--finetune_minutes`` of training time, with an evaluation every
``--eval_every_minutes`` on the first ``--eval_subset_size`` validation examples (the learning curve) and a
final evaluation on the FULL validation split. Each run appends one JSON line to ``--results`` when it ends:
task, architecture, seed, minutes, metric and value, every eval metric, load average at start and end, the
exact command and the git commit. Rerunning the same command skips runs already recorded and lets an
interrupted run resume from its last checkpoint (the recipes do that by themselves). At the end it writes
the markdown table (Forge and BART side by side) and one learning-curve PNG per task next to ``--results``.

Measure with nothing else running (the load average is recorded so a reader can check).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(1, str(REPO))  # `recipes.core` for rendering (run as `python bench/quality.py`, bench/ is on the path)
from finetune_table import TASKS as PUBLISHED  # noqa: E402  (row labels, metric names, published figures)

# task -> (recipe module, headline metric, issue-13 CPU goal, recipe flags)
TASKS: dict[str, tuple[str, str, float, list[str]]] = {
    "sentiment": ("recipes.sentiment", "eval_accuracy", 83.0, ["--max_seq_length", "128"]),
    "translation": ("recipes.translation", "eval_bleu", 28.0, [
        "--source_lang", "de", "--target_lang", "en", "--max_source_length", "64", "--max_target_length", "64",
        "--label_smoothing_factor", "0.1", "--num_beams", "4", "--val_max_target_length", "64"]),
    "summarization": ("recipes.summarization", "eval_rougeL", 24.0, [
        "--max_source_length", "512", "--max_target_length", "64", "--num_beams", "4", "--val_max_target_length", "64"]),
    "qa": ("recipes.qa", "eval_f1", 35.0, ["--max_seq_length", "384", "--doc_stride", "128"]),
    "srl": ("recipes.srl", "eval_f1", 55.0, ["--max_seq_length", "128"]),
}
ARCH_NAMES = {"forge": "Forge", "bart": "BART"}
# a pretrained Forge start keeps its folder's config, so the head options that a scratch run gets from the recipe's
# preset defaults (TaskSpec.preset_config_defaults: QA's lexical-match vector, summarization's copy head) are passed
# as flags: the scratch and pretrained rows of a task then train the same head (the main job does the same)
PRETRAINED_HEAD_FLAGS: dict[str, list[str]] = {"qa": ["--lexical_match", "true"],
                                                "summarization": ["--copy_attention", "true"]}
# tasks trained from scratch on a tokenizer fitted to their own train split: (text columns, vocabulary size).
# Translation: one joint German+English vocabulary (the pretraining tokenizer, fitted to English Wikipedia,
# splits German into many short pieces); bench/results/sweep_translation.jsonl holds the comparison.
# DialogSum: an 8k vocabulary of its dialogues and summaries (37% more steps than the 16k pretraining tokenizer
# in 30 minutes, bench/results/explore/README.md, session 15).
TASK_TOKENIZERS: dict[str, tuple[list[str], int]] = {"translation": (["de", "en"], 8000),
                                                      "summarization": (["document", "summary"], 8000)}
# word vectors for the token-embedding rows of scratch runs (--init_embeddings, paths under --data_dir), both
# architectures alike. SQuAD: F1 20.8 against 15.9 / 15.8 without them in 15 minutes (GloVe 50d covers 60% of the 16k
# tokenizer; bench/results/explore/README.md, session 17). SST-2 (77.3 and, frozen, 76.1) and SRL (+1, inside the
# seed spread) did not gain: not defaults there.
TASK_WORD_VECTORS: dict[str, str] = {"qa": "wordvectors/glove.6B.50d.top20k.txt"}
# tasks whose own tokenizer is a lever to measure, not a default yet: --task_tokenizers translation sentiment srl
TASK_TOKENIZER_COLUMNS: dict[str, list[str]] = {**{t: c for t, (c, _) in TASK_TOKENIZERS.items()}, "sentiment": ["text"],
                                                "srl": ["tokens"]}  # SRL's word lists, joined by spaces


def parse_task_tokenizers(values: list[str]) -> dict[str, int]:
    """``--task_tokenizers`` values -> {task: vocabulary size}: true (the default set), false/none, or TASK[:SIZE]..."""
    chosen: dict[str, int] = {}
    for value in values:
        if value.lower() in ("1", "true", "yes"):
            chosen.update({t: size for t, (_, size) in TASK_TOKENIZERS.items()})
        elif value.lower() in ("0", "false", "no", "none"):
            continue
        else:
            task, _, size = value.partition(":")
            if task not in TASK_TOKENIZER_COLUMNS:
                raise SystemExit(f"--task_tokenizers: no text columns known for {task!r}; choose from "
                                 f"{', '.join(TASK_TOKENIZER_COLUMNS)} (or true / false)")
            chosen[task] = int(size) if size else TASK_TOKENIZERS.get(task, ([], 8000))[1]
    return chosen


def parse_task_word_vectors(values: list[str], data_dir: Path) -> dict[str, str]:
    """``--task_word_vectors`` values -> {task: vector file}: true (the default set), false/none, or task names."""
    chosen: dict[str, str] = {}
    for value in values:
        if value.lower() in ("1", "true", "yes"):
            chosen.update({t: str(data_dir / p) for t, p in TASK_WORD_VECTORS.items()})
        elif value.lower() not in ("0", "false", "no", "none"):
            if value not in TASKS:
                raise SystemExit(f"--task_word_vectors {value!r}: not a task ({', '.join(TASKS)}), true or false")
            chosen[value] = str(data_dir / next(iter(TASK_WORD_VECTORS.values())))
    return chosen


def git_commit() -> str:
    """HEAD, or ``FORGE_GIT_COMMIT`` when set: a copied working tree (the GPU machine's) can carry a stale .git."""
    if os.environ.get("FORGE_GIT_COMMIT"):
        return os.environ["FORGE_GIT_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_records(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def run_key(stage: str, task: str, architecture: str, seed: int) -> str:
    return f"{stage}/{task}/{architecture}/seed{seed}"


def _run(command: list[str], log: Path, env: dict[str, str]) -> tuple[int, float]:
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"\n$ {shlex.join(command)}\n")
        handle.flush()
        rc = subprocess.run(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, env=env).returncode
    return rc, time.time() - started


def results_of(folder: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("train_results.json", "eval_results.json", "all_results.json"):
        if (folder / name).is_file():
            out.update(json.loads((folder / name).read_text(encoding="utf-8")))
    return out


class Harness:
    """Runs the stages in order, recording each finished run and skipping recorded ones."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.results = Path(args.results)
        self.runs = Path(args.runs_dir)
        self.commit = git_commit()
        self.lock = threading.Lock()
        self.print_lock = threading.Lock()
        self.env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                    "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
        if args.threads:
            self.env["OMP_NUM_THREADS"] = str(args.threads)

    def say(self, line: str) -> None:
        """One whole line at a time (runs may finish in parallel threads)."""
        with self.print_lock:
            print(line, flush=True)

    def recorded(self) -> dict[str, dict]:
        return {r["key"]: r for r in load_records(self.results) if r.get("rc") == 0}

    def record(self, row: dict) -> None:
        self.results.parent.mkdir(parents=True, exist_ok=True)
        with self.lock, open(self.results, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")

    def execute(self, key: str, command: list[str], folder: Path, extra: dict) -> Optional[dict]:
        """Run ``command`` unless ``key`` is recorded; record and return its row."""
        done = self.recorded()
        if key in done:
            recorded = shlex.split(done[key]["command"])
            if recorded[1:] != command[1:]:  # the interpreter's path aside
                raise SystemExit(
                    f"{self.results} records {key} for another command:\n  {done[key]['command']}\nnot\n  "
                    f"{shlex.join(command)}\nGive this run its own --results file and --runs_dir.")
            self.say(f"[skip] {key} (recorded)")
            return done[key]
        self.say(f"[run ] {key}: {shlex.join(command)}")
        if self.args.dry_run:
            return None
        load_start = os.getloadavg()
        self.claim(folder, command)
        if (folder / "all_results.json").is_file() and (folder / "model.safetensors").is_file():
            # finished before its record was written (the harness was killed in between): record, do not rerun
            rc, seconds, extra = 0, 0.0, {**extra, "recovered_from_folder": True}
        else:
            rc, seconds = _run(command, self.runs / "logs" / (key.replace("/", "_") + ".log"), self.env)
        results = results_of(folder)
        row = {
            "key": key, **extra, "rc": rc, "wall_s": round(seconds, 1),
            "train_minutes": round(results.get("train_runtime", 0.0) / 60, 2),
            "loadavg_start": [round(x, 2) for x in load_start], "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "command": shlex.join(command), "git_commit": self.commit, "output_dir": str(folder),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": results,
        }
        if "metric" in extra:
            row["value"] = results.get(extra["metric"])
        self.record(row)
        self.say(f"[done] {key}: rc={rc} {extra.get('metric', '')}={row.get('value')}")
        return row

    def claim(self, folder: Path, command: list[str]) -> None:
        """Write which command a run folder belongs to (``FOLDER.command.json`` beside it), or check it.

        A folder is recovered (finished) or resumed (checkpoints) by the next run with its name, so a run whose
        command differs (another tokenizer, learning rate or flag in the same ``--runs_dir``) would otherwise be
        recorded with the earlier run's result, or continue its checkpoints. That is refused, naming both commands.
        """
        marker = folder.with_name(folder.name + ".command.json")
        if marker.is_file():
            previous = json.loads(marker.read_text(encoding="utf-8"))
            if previous[1:] != command[1:]:  # the interpreter's path aside
                raise SystemExit(
                    f"{folder} belongs to another command:\n  {shlex.join(previous)}\nnot\n  {shlex.join(command)}\n"
                    "Give this run its own --runs_dir (or delete that folder and its .command.json to rerun it).")
            return
        if folder.exists() and any(folder.iterdir()):
            self.say(f"[warn] {folder} predates command records: resuming it as this command's run")
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(command) + "\n", encoding="utf-8")

    # ---------------------------------------------------------------------------------------------------
    def common(self, seed: int, save_steps: Optional[int] = None) -> list[str]:
        a = self.args
        flags = ["--report_to", "none", "--disable_tqdm", "true", "--seed", str(seed), "--dataloader_pin_memory", "false",
                 "--logging_steps", str(a.logging_steps), "--save_strategy", "steps",
                 "--save_steps", str(save_steps or a.save_steps), "--save_total_limit", "1"]
        return flags

    def training_flags(self) -> list[str]:
        """Learning rate, warm-up and batch size when given on the command line; otherwise nothing, so that each
        recipe's own measured defaults (``TaskSpec.training_defaults``, shown by ``--help``) apply."""
        a, flags = self.args, []
        for flag, value in (("--learning_rate", a.learning_rate), ("--warmup_steps", a.warmup_steps),
                            ("--per_device_train_batch_size", a.batch_size), ("--weight_decay", a.weight_decay)):
            if value is not None:
                flags += [flag, str(value)]
        return flags

    def pretrain_corpus(self) -> Path:
        """The pretraining text: ``pretrain/train.jsonl``, plus each ``--pretrain_mix`` ``TASK:COLUMN``'s train-split
        text as extra documents (e.g. ``translation:de``, the source language of translation, which English
        Wikipedia lacks). Written under ``--runs_dir`` (a derived working file, not part of the repository)."""
        a = self.args
        source = Path(a.data_dir) / "pretrain" / "train.jsonl"
        if not a.pretrain_mix:
            return source
        target = self.runs / "pretrain_corpus" / "train.jsonl"
        recipe = target.with_name("mix.json")  # what the file was built from: a different mix must not reuse it
        wanted = {"source": str(source), "mix": list(a.pretrain_mix)}
        if target.is_file():
            built = json.loads(recipe.read_text(encoding="utf-8")) if recipe.is_file() else None
            if built is None:  # written before mix.json existed: it is what this command would build
                recipe.write_text(json.dumps(wanted) + "\n", encoding="utf-8")
            elif {k: built.get(k) for k in wanted} != wanted:
                raise SystemExit(f"{target} was built from {built}, not {wanted}: give another --runs_dir (or delete "
                                 f"{target.parent} to rebuild it).")
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        partial, added = target.with_suffix(".partial"), {}
        with open(partial, "w", encoding="utf-8") as out:
            out.write(source.read_text(encoding="utf-8").rstrip("\n") + "\n")
            for item in a.pretrain_mix:
                task, _, column = item.partition(":")
                with open(Path(a.data_dir) / task / "train.jsonl", encoding="utf-8") as handle:
                    rows = [json.loads(line) for line in handle if line.strip()]
                if not rows or column not in rows[0]:
                    raise SystemExit(f"--pretrain_mix {item}: {task}/train.jsonl has no column {column!r}")
                # a token-list column (SRL's tokens) becomes its sentence; a text repeated over rows (SQuAD's
                # contexts, one per question) is added once
                texts = dict.fromkeys(" ".join(v) if isinstance(v, list) else str(v) for v in (r[column] for r in rows))
                for text in texts:
                    out.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
                added[item] = len(texts)
        partial.replace(target)  # complete or absent: an interrupted write is redone
        recipe.write_text(json.dumps({**wanted, "documents_added": added}) + "\n", encoding="utf-8")
        self.say(f"[data] pretraining corpus {target}: {source} + {added} documents")
        return target

    def tokenizer(self) -> Path:
        a = self.args
        folder = self.runs / "tokenizer"
        command = [sys.executable, "-m", "tokenization.train", "--train_file", str(self.pretrain_corpus()),
                   "--vocab_size", str(a.vocab_size), "--output_dir", str(folder), "--no_progress", "true",
                   "--overwrite_output_dir", "true"]
        if a.tokenizer_samples:
            command += ["--max_samples", str(a.tokenizer_samples)]
        self.execute("tokenizer/pretrain/any/seed0", command, folder, {"stage": "tokenizer"})
        return folder

    def task_tokenizer(self, task: str) -> Optional[Path]:
        """A tokenizer trained on ``task``'s own train split (scratch runs of TASK_TOKENIZERS' tasks)."""
        if task not in self.args.task_tokenizers:
            return None
        columns, vocab_size = TASK_TOKENIZER_COLUMNS[task], self.args.task_tokenizers[task]
        default = TASK_TOKENIZERS.get(task, ([], None))[1]  # the default size keeps the folder name of earlier runs
        name = f"tokenizer-{task}" if vocab_size == default else f"tokenizer-{task}-{vocab_size}"
        added = self.args.added_tokens.get(task, [])
        folder = self.runs / (f"{name}-added{len(added)}" if added else name)
        command = [sys.executable, "-m", "tokenization.train", "--train_file", f"{self.args.data_dir}/{task}/train.jsonl",
                   "--text_columns", *columns, "--vocab_size", str(min(vocab_size, self.args.vocab_size)),
                   "--output_dir", str(folder), "--no_progress", "true", "--overwrite_output_dir", "true"]
        if added:
            command += ["--added_tokens", *added]
        self.execute(f"tokenizer/{task}/any/seed0", command, folder, {"stage": "tokenizer", "task": task})
        return folder

    def pretrain(self, architecture: str, tokenizer: Path) -> Path:
        a = self.args
        folder = self.runs / f"pretrained-{architecture}"
        command = [sys.executable, "-m", "recipes.pretrain", "--architecture", architecture,
                   "--train_file", str(self.pretrain_corpus()),
                   "--validation_file", f"{a.data_dir}/pretrain/validation.jsonl", "--config_name", a.preset,
                   "--tokenizer_name", str(tokenizer), "--block_size", str(a.block_size), "--max_steps", "1000000",
                   "--max_train_minutes", str(a.pretrain_minutes), "--per_device_train_batch_size", str(a.pretrain_batch_size),
                   "--learning_rate", str(a.pretrain_learning_rate), "--warmup_steps", "100",
                   "--eval_strategy", "no", "--output_dir", str(folder),
                   *self.common(a.seeds[0], a.pretrain_save_steps), *a.extra_pretrain]
        self.execute(run_key("pretrain", "pretrain", architecture, a.seeds[0]), command, folder,
                     {"stage": "pretrain", "task": "pretrain", "architecture": architecture, "seed": a.seeds[0],
                      "minutes": a.pretrain_minutes, "metric": "eval_loss"})
        return folder

    def finetune(self, task: str, architecture: str, seed: int, base: Optional[Path], tokenizer: Optional[Path]) -> None:
        a = self.args
        module, metric, _, flags = TASKS[task]
        init = "pretrained" if base is not None else "scratch"
        folder = self.runs / f"{task}-{architecture}-{init}-seed{seed}"
        if base is None:
            tokenizer = self.task_tokenizer(task) or tokenizer
        start = ["--model_name_or_path", str(base)] if base is not None else ["--config_name", a.preset, "--tokenizer_name", str(tokenizer)]
        if base is not None and architecture == "forge":
            start += PRETRAINED_HEAD_FLAGS.get(task, [])
        if base is None and task in a.task_word_vectors:
            if not Path(a.task_word_vectors[task]).is_file():
                raise SystemExit(f"--task_word_vectors: {a.task_word_vectors[task]} (the {task} runs' word vectors) does "
                                 "not exist; pass --task_word_vectors false to train those rows from random values")
            start += ["--init_embeddings", a.task_word_vectors[task]]
        command = [sys.executable, "-m", module, "--architecture", architecture, *start,
                   "--train_file", f"{a.data_dir}/{task}/train.jsonl", "--validation_file", f"{a.data_dir}/{task}/validation.jsonl",
                   "--do_train", "--do_eval", "--num_train_epochs", "1000", "--max_train_minutes", str(a.finetune_minutes),
                   *self.training_flags(), "--per_device_eval_batch_size", str((a.batch_size or 32) * 2),
                   "--eval_strategy", "no", "--eval_every_minutes", str(a.eval_every_minutes),
                   "--eval_subset_size", str(a.eval_subset_size), "--output_dir", str(folder),
                   # batches of similar length, padded to a multiple of 8: less padding per CPU-minute
                   "--train_sampling_strategy", "group_by_length", "--pad_to_multiple_of", "8",
                   *self.common(seed), *flags, *a.extra_finetune]
        self.execute(run_key(f"finetune-{init}", task, architecture, seed), command, folder,
                     {"stage": "finetune", "task": task, "architecture": architecture, "seed": seed, "init": init,
                      "minutes": a.finetune_minutes, "metric": metric})

    def run(self) -> None:
        a = self.args
        # the pretraining corpus's tokenizer, unless every run is a scratch run on a task tokenizer of its own
        own = a.from_scratch and all(task in a.task_tokenizers for task in a.tasks)
        bases: dict[str, Optional[Path]] = {}
        if a.pretrained:  # an existing pretrained folder (its own tokenizer): fine-tuning only
            tokenizer = folder = Path(a.pretrained)
            bases = {architecture: folder for architecture in a.architectures}
        else:
            tokenizer = None if own else self.tokenizer()
            for architecture in a.architectures:
                bases[architecture] = None if a.from_scratch else self.pretrain(architecture, tokenizer)
        jobs = [
            (task, architecture, seed)
            for task in a.tasks
            for seed in list(a.seeds) + ([a.seeds[0] + 1] if task == a.second_seed_task else [])
            for architecture in a.architectures
        ]
        if a.parallel > 1:  # one accelerator, several small runs at once (bench/gpu_quality.sh)
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=a.parallel) as pool:
                for future in [pool.submit(self.finetune, t, arch, s, bases[arch], tokenizer) for t, arch, s in jobs]:
                    future.result()
        else:
            for task, architecture, seed in jobs:
                self.finetune(task, architecture, seed, bases[architecture], tokenizer)
        if not a.dry_run and a.tasks:
            render(self.results)  # every task recorded in the file: a run of one task must not drop the others' rows


# ---------------------------------------------------------------------------------------------------------
# Rendering: README table and learning curves
# ---------------------------------------------------------------------------------------------------------
def quality_table(records: list[dict], tasks: Optional[list[str]] = None) -> str:
    """Markdown: one row per task; a column per start (scratch, pretrained) and architecture that has a run, Forge
    and BART side by side (mean of seeds, both values when there are two)."""
    finished = [r for r in records if r.get("stage") == "finetune" and r.get("rc") == 0 and r.get("value") is not None]
    latest: dict[str, dict] = {r["key"]: r for r in finished}  # a rerun replaces an earlier record
    chosen = [t for t in tasks or list(TASKS) if any(r["task"] == t for r in latest.values())]
    columns = [(init, arch) for init in ("scratch", "pretrained") for arch in ("forge", "bart")
               if any(r.get("init", "scratch") == init and r["architecture"] == arch and r["task"] in chosen
                      for r in latest.values())]
    names = [f"{ARCH_NAMES[arch]} {init}" if any(i != "scratch" for i, _ in columns) else ARCH_NAMES[arch]
             for init, arch in columns]
    lines = ["| task (validation split) | metric | goal | " + " | ".join(names) + " | minutes | load avg (start-end) |",
             "|---|---|---:|" + "---:|" * len(columns) + "---:|---|"]
    for task in chosen:
        _, metric, goal, _ = TASKS[task]
        rows = [r for r in latest.values() if r["task"] == task]
        cells = []
        for init, architecture in columns:
            values = [r["value"] for r in rows if r["architecture"] == architecture and r.get("init", "scratch") == init]
            if not values:
                cells.append("-")
            elif len(values) == 1:
                cells.append(f"{values[0]:.1f}")
            else:
                mean = sum(values) / len(values)
                cells.append(f"{mean:.1f} ({', '.join(f'{v:.1f}' for v in values)})")
        label = PUBLISHED.get(task, (task,))[0]
        minutes = max(r.get("train_minutes", 0) for r in rows)
        loads = f"{min(r['loadavg_start'][0] for r in rows):.1f}-{max(r['loadavg_end'][0] for r in rows):.1f}"
        lines.append(f"| {label} | {metric.removeprefix('eval_')} | {goal:g} | {' | '.join(cells)} | {minutes:.1f} | {loads} |")
    return "\n".join(lines)


def curve_scope(record: dict, curve: list[dict]) -> str:
    """What a run's curve points were scored on: QA's evaluations during training score every validation question
    (``--eval_subset_size`` does not apply there; each point counts them as ``eval_total``), the others' the first
    ``--eval_subset_size`` examples."""
    whole = record.get("results", {}).get("eval_total")
    if whole is not None and curve and {p.get("eval_total") for p in curve} == {whole}:
        return "whole validation split"
    return "validation subset"


def plot_curves(records: list[dict], out_dir: Path) -> list[Path]:
    """One PNG per task: headline metric vs training minutes, a line per (architecture, seed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from recipes.core.learning_curve import read_learning_curve

    written = []
    # the latest record of each run, as in the table (a rerun, e.g. after a model change, replaces the earlier one)
    runs = list({r["key"]: r for r in records if r.get("stage") == "finetune" and r.get("rc") == 0}.values())
    for task in sorted({r["task"] for r in runs}):
        metric = TASKS[task][1]
        fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
        try:
            for r in sorted((r for r in runs if r["task"] == task), key=lambda r: r["key"]):
                curve = [p for p in read_learning_curve(r["output_dir"]) if metric in p]
                points = [(p["train_minutes"], p[metric]) for p in curve]
                label = f"{ARCH_NAMES.get(r['architecture'], r['architecture'])} seed {r['seed']} ({r.get('init', '')})"
                if points:
                    ax.plot(*zip(*points), marker=".", label=f"{label}, {curve_scope(r, curve)}")
                if r.get("value") is not None:
                    ax.scatter([r.get("train_minutes", 0)], [r["value"]], marker="*", s=120, label=f"{label}, full validation")
            ax.axhline(TASKS[task][2], color="grey", linestyle="--", label="issue-13 CPU goal")
            ax.set_xlabel("training minutes (evaluation excluded)")
            ax.set_ylabel(metric.removeprefix("eval_"))
            ax.set_title(task)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            fig.tight_layout()
            path = out_dir / f"learning_curve_{task}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path)
            written.append(path)
        finally:
            plt.close(fig)
    return written


def render(results: Path, tasks: Optional[list[str]] = None) -> str:
    records = load_records(results)
    table = quality_table(records, tasks)
    stem = results.with_suffix("")
    (stem.parent / f"{stem.name}_table.md").write_text(table + "\n", encoding="utf-8")
    plot_curves(records, stem.parent / f"{stem.name}_curves")
    print(table)
    return table


# ---------------------------------------------------------------------------------------------------------
def parse(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--runs_dir", default="outputs/quality", help="model folders and logs")
    parser.add_argument("--results", default="bench/results/quality_cpu.jsonl", help="JSONL, one record per run")
    parser.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS),
                        help="tasks to fine-tune (default: all five); none: the tokenizer and pretraining only")
    parser.add_argument("--architectures", nargs="+", default=["forge", "bart"], choices=["forge", "bart"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[42])
    parser.add_argument("--second_seed_task", choices=list(TASKS), default=None,
                        help="also run this task with seed+1 (the run-to-run spread)")
    parser.add_argument("--preset", default="forge-small")
    parser.add_argument("--vocab_size", type=int, default=16384)
    parser.add_argument("--tokenizer_samples", type=int, default=None)
    parser.add_argument("--from_scratch", action="store_true", help="skip pretraining")
    parser.add_argument("--pretrained", default=None, metavar="FOLDER",
                        help="fine-tune from this pretrained folder of the one --architectures given (e.g. a learning-"
                        "rate sweep on one pretraining run): no tokenizer or pretraining stage")
    parser.add_argument("--task_tokenizers", nargs="+", default=["true"], metavar="TASK[:SIZE]",
                        help="scratch runs of these tasks use a tokenizer trained on the task's train split: true "
                        "(default: " + ", ".join(f"{t} {n}" for t, (_, n) in TASK_TOKENIZERS.items()) + "), false, "
                        "or task names with an optional vocabulary size (" + ", ".join(TASK_TOKENIZER_COLUMNS) + ")")
    parser.add_argument("--task_word_vectors", nargs="+", default=["true"], metavar="TASK",
                        help="scratch runs of these tasks start their token-embedding rows from word vectors "
                        "(--init_embeddings): true (default: " + ", ".join(f"{t} {p}" for t, p in TASK_WORD_VECTORS.items())
                        + ", under --data_dir), false, or task names (each takes the default file)")
    parser.add_argument("--added_tokens", nargs="+", default=[], metavar="TASK:TOKEN",
                        help="strings a task tokenizer keeps whole (tokenization.train --added_tokens), e.g. "
                        "summarization:#Person1# summarization:#Person2#")
    parser.add_argument("--pretrain_minutes", type=float, default=60.0)
    parser.add_argument("--pretrain_mix", nargs="*", default=["translation:de"], metavar="TASK:COLUMN",
                        help="task text added to the pretraining corpus and its tokenizer (default: translation's "
                        "German side, the source language English Wikipedia lacks); none: English Wikipedia only")
    parser.add_argument("--finetune_minutes", type=float, default=30.0)
    parser.add_argument("--eval_every_minutes", type=float, default=3.0)
    parser.add_argument("--eval_subset_size", type=int, default=200)
    parser.add_argument("--block_size", type=int, default=256)
    # None: the recipe's own default (its TaskSpec.training_defaults, else the Trainer's)
    parser.add_argument("--batch_size", type=int, default=None, help="fine-tuning batch (default: the recipe's)")
    parser.add_argument("--learning_rate", type=float, default=None, help="fine-tuning LR (default: the recipe's)")
    parser.add_argument("--weight_decay", type=float, default=None, help="fine-tuning weight decay (default: the recipe's)")
    # 1e-3, not the 2e-3 that gave the lowest 5-minute validation loss (sweep_pretrain.jsonl): after 60 minutes at
    # 2e-3 the encoder carries massive activations and fine-tunes worse than random weights; at 1e-3 they are 4x
    # smaller and the start beats scratch (bench/results/explore/README.md, "The learning rate of the pretraining").
    parser.add_argument("--pretrain_learning_rate", type=float, default=1e-3)
    parser.add_argument("--pretrain_batch_size", type=int, default=32)
    parser.add_argument("--pretrain_save_steps", type=int, default=None,
                        help="pretraining checkpoint interval (default: --save_steps); a CPU step is slow, so lower")
    parser.add_argument("--warmup_steps", type=float, default=None, help="fine-tuning warm-up (default: the recipe's)")
    parser.add_argument("--logging_steps", type=int, default=25)
    parser.add_argument("--save_steps", type=int, default=500, help="checkpoint interval (resume after an interruption)")
    parser.add_argument("--parallel", type=int, default=1, help="fine-tuning runs at once (1 on a 2-core CPU)")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of each run (default: all cores)")
    parser.add_argument("--extra_finetune", nargs=argparse.REMAINDER, default=[])
    parser.add_argument("--extra_pretrain", default=[], type=shlex.split)
    parser.add_argument("--dry_run", action="store_true", help="print the commands only")
    parser.add_argument("--smoke", action="store_true",
                        help="seconds-long end-to-end check: sample data, forge-tiny, tiny budgets and slices")
    args = parser.parse_args(argv)
    if [m.lower() for m in args.pretrain_mix] == ["none"]:  # the help's spelling of "English Wikipedia only"
        args.pretrain_mix = []
    args.task_tokenizers = parse_task_tokenizers(args.task_tokenizers)
    args.task_word_vectors = parse_task_word_vectors(args.task_word_vectors, Path(args.data_dir))
    added: dict[str, list[str]] = {}
    for item in args.added_tokens:
        task, sep, token = item.partition(":")
        if not sep or not token or task not in args.task_tokenizers:
            parser.error(f"--added_tokens {item!r}: write TASK:TOKEN for a task with a tokenizer of its own "
                         f"(--task_tokenizers: {', '.join(args.task_tokenizers) or 'none'})")
        added.setdefault(task, []).append(token)
    args.added_tokens = added
    if args.pretrained and (args.from_scratch or len(args.architectures) != 1):
        parser.error("--pretrained FOLDER fine-tunes that one model: give one --architectures and no --from_scratch")
    if args.smoke:
        args.data_dir = str(REPO / "recipes" / "sample_data")
        args.preset, args.vocab_size, args.block_size, args.batch_size = "forge-tiny", 1000, 64, 4
        args.pretrain_batch_size = 4
        args.pretrain_minutes, args.finetune_minutes, args.eval_every_minutes = 0.03, 0.02, 0.005
        args.eval_subset_size, args.save_steps, args.logging_steps = 4, 5, 1
        args.extra_pretrain = ["--max_train_samples", "40", "--max_eval_samples", "8"] + list(args.extra_pretrain)
        args.extra_finetune = ["--max_train_samples", "24", "--max_eval_samples", "6"] + list(args.extra_finetune)
        args.threads = args.threads or 1
        args.task_word_vectors = {}  # the sample data has no word vectors
    return args


def main(argv: Optional[list[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "render":
        args = parse(argv[1:])
        render(Path(args.results), args.tasks)
        return
    Harness(parse(argv)).run()


if __name__ == "__main__":
    main()
