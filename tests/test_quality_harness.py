"""bench/quality.py end to end in seconds (--smoke: sample data, forge-tiny, tiny budgets): records, resume, table."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
import quality  # noqa: E402


@pytest.mark.xdist_group("subprocess-heavy")
def test_quality_harness_smoke_records_every_run_resumes_and_renders(tmp_path):
    results = tmp_path / "results" / "quality.jsonl"
    command = [sys.executable, "bench/quality.py", "--smoke", "--runs_dir", str(tmp_path / "runs"),
               "--results", str(results), "--tasks", "sentiment", "--second_seed_task", "sentiment"]
    subprocess.run(command, cwd=REPO, check=True, timeout=900)
    records = [json.loads(line) for line in results.read_text().splitlines()]
    keys = [r["key"] for r in records]
    assert keys[0] == "tokenizer/pretrain/any/seed0"
    assert {"pretrain/pretrain/forge/seed42", "pretrain/pretrain/bart/seed42"} <= set(keys)
    finetunes = [r for r in records if r["stage"] == "finetune"]
    assert {(r["task"], r["architecture"], r["seed"]) for r in finetunes} == {
        ("sentiment", "forge", 42), ("sentiment", "bart", 42), ("sentiment", "forge", 43), ("sentiment", "bart", 43)}
    for r in records:
        assert r["rc"] == 0, r["key"]
        assert len(r["loadavg_start"]) == 3 and len(r["loadavg_end"]) == 3 and r["git_commit"] and r["command"]
    for r in finetunes:
        assert r["value"] is not None and r["metric"] == "eval_accuracy" and r["init"] == "pretrained"
        assert "--architecture " + r["architecture"] in r["command"]
        curve = Path(r["output_dir"]) / "learning_curve.jsonl"
        assert curve.is_file() and r["metric"] in json.loads(curve.read_text().splitlines()[0])
    # the pretraining corpus (and its tokenizer) holds translation's German side next to the English text
    corpus = (tmp_path / "runs" / "pretrain_corpus" / "train.jsonl").read_text(encoding="utf-8")
    german = json.loads((REPO / "recipes/sample_data/translation/train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert json.dumps({"text": german["de"]}, ensure_ascii=False) in corpus
    assert str(tmp_path / "runs" / "pretrain_corpus" / "train.jsonl") in next(
        r["command"] for r in records if r["key"] == "pretrain/pretrain/forge/seed42")
    # fine-tuning takes each recipe's own measured defaults unless the harness is told otherwise
    assert "--learning_rate" not in finetunes[0]["command"]
    bart = next(r for r in finetunes if r["architecture"] == "bart")
    assert json.loads((Path(bart["output_dir"]) / "config.json").read_text())["model_type"] == "bart"

    table = (results.parent / "quality_table.md").read_text()
    assert "| Forge pretrained | BART pretrained |" in table and len(table.strip().splitlines()) == 3  # one task
    assert "(" in table.splitlines()[2]  # two seeds: the mean and both values
    assert (results.parent / "quality_curves" / "learning_curve_sentiment.png").is_file()

    again = subprocess.run(command, cwd=REPO, check=True, timeout=300, capture_output=True, text=True)
    assert again.stdout.count("[skip]") == len(records) and "[run ]" not in again.stdout  # resumable
    assert len(results.read_text().splitlines()) == len(records)


def test_quality_table_puts_forge_and_bart_side_by_side_with_the_seed_spread():
    rows = [
        {"key": k, "stage": "finetune", "rc": 0, "task": "sentiment", "architecture": a, "seed": s, "value": v,
         "train_minutes": 30.0, "loadavg_start": [0.1, 0, 0], "loadavg_end": [1.2, 0, 0]}
        for k, a, s, v in (("a", "forge", 42, 80.0), ("b", "forge", 43, 82.0), ("c", "bart", 42, 79.5))
    ]
    table = quality.quality_table(rows)
    assert "| Forge | BART |" in table
    assert "| SST-2 sentiment (872) | accuracy | 83 | 81.0 (80.0, 82.0) | 79.5 | 30.0 | 0.1-1.2 |" in table
    # a pretrained start is its own column, never averaged with the scratch runs as if it were a seed
    rows.append({**rows[0], "key": "d", "init": "pretrained", "value": 84.0})
    table = quality.quality_table(rows)
    assert "| Forge scratch | BART scratch | Forge pretrained |" in table
    assert "| SST-2 sentiment (872) | accuracy | 83 | 81.0 (80.0, 82.0) | 79.5 | 84.0 | 30.0 | 0.1-1.2 |" in table


def test_pretraining_corpus_is_not_reused_for_another_mix(tmp_path):
    """The mixed corpus is reused by a rerun (resume), never by a command that asks for a different mix."""
    data = REPO / "recipes" / "sample_data"
    first = quality.Harness(quality.parse(["--data_dir", str(data), "--runs_dir", str(tmp_path)]))
    corpus = first.pretrain_corpus()
    assert json.loads((corpus.parent / "mix.json").read_text())["mix"] == ["translation:de"]
    assert quality.Harness(quality.parse(["--data_dir", str(data), "--runs_dir", str(tmp_path)])).pretrain_corpus() == corpus
    other = quality.Harness(quality.parse(["--data_dir", str(data), "--runs_dir", str(tmp_path),
                                           "--pretrain_mix", "translation:en"]))
    with pytest.raises(SystemExit, match="another --runs_dir"):
        other.pretrain_corpus()
    # task text for task-adaptive pretraining: SRL's token lists as sentences, QA's repeated contexts once
    mixed = quality.Harness(quality.parse(["--data_dir", str(data), "--runs_dir", str(tmp_path / "tapt"),
                                           "--pretrain_mix", "srl:tokens", "qa:context"])).pretrain_corpus()
    texts = [json.loads(line)["text"] for line in mixed.read_text(encoding="utf-8").splitlines()]
    srl = json.loads((data / "srl" / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    contexts = [json.loads(line)["context"] for line in (data / "qa" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert " ".join(srl["tokens"]) in texts and all(isinstance(t, str) for t in texts)
    assert sum(t in set(contexts) for t in texts) == len(set(contexts))


def test_pretrained_folder_is_fine_tuned_without_tokenizer_or_pretraining_stage(tmp_path, capsys):
    """--pretrained FOLDER: a learning-rate sweep on one pretraining run fine-tunes that folder and nothing else."""
    folder = tmp_path / "pretrained-forge"
    quality.Harness(quality.parse(["--pretrained", str(folder), "--architectures", "forge", "--tasks", "srl",
                                   "--runs_dir", str(tmp_path), "--results", str(tmp_path / "r.jsonl"),
                                   "--dry_run"])).run()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert len(lines) == 1 and lines[0].startswith("[run ] finetune-pretrained/srl/forge/seed42:")
    assert f"--model_name_or_path {folder} " in lines[0]
    with pytest.raises(SystemExit):
        quality.parse(["--pretrained", str(folder)])  # two architectures cannot share one pretrained folder


def test_pretrained_start_gets_the_head_options_a_scratch_run_gets_from_its_preset(tmp_path, capsys):
    """QA's lexical-match vector and summarization's copy head are preset defaults of the recipes; a pretrained
    folder keeps its own config, so the harness passes them as flags and both rows of a task train the same head."""
    folder = tmp_path / "pretrained-forge"
    quality.Harness(quality.parse(["--pretrained", str(folder), "--architectures", "forge", "--tasks", "qa",
                                   "summarization", "sentiment", "--runs_dir", str(tmp_path),
                                   "--results", str(tmp_path / "r.jsonl"), "--dry_run"])).run()
    lines = {line.split(":")[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("[run ]")}
    assert " --lexical_match true " in lines["[run ] finetune-pretrained/qa/forge/seed42"]
    assert " --copy_attention true " in lines["[run ] finetune-pretrained/summarization/forge/seed42"]
    assert "--lexical_match" not in lines["[run ] finetune-pretrained/sentiment/forge/seed42"]
    assert "--copy_attention" not in lines["[run ] finetune-pretrained/sentiment/forge/seed42"]


def test_task_tokenizers_choose_which_scratch_runs_get_a_tokenizer_of_their_own(tmp_path, capsys):
    """--task_tokenizers: true is translation's and summarization's 8k defaults; task names (with a size) add
    others; false none."""
    assert quality.parse(["--tasks", "sentiment"]).task_tokenizers == {"translation": 8000, "summarization": 8000}
    assert quality.parse(["--task_tokenizers", "false"]).task_tokenizers == {}
    assert quality.parse(["--task_tokenizers", "true", "sentiment:4000"]).task_tokenizers == {
        "translation": 8000, "summarization": 8000, "sentiment": 4000}
    assert quality.parse(["--task_tokenizers", "srl"]).task_tokenizers == {"srl": 8000}  # its word lists, joined
    with pytest.raises(SystemExit, match="no text columns known for 'qa'"):
        quality.parse(["--task_tokenizers", "qa"])
    quality.Harness(quality.parse(["--from_scratch", "--tasks", "sentiment", "--architectures", "forge",
                                   "--task_tokenizers", "sentiment:4000", "--runs_dir", str(tmp_path),
                                   "--results", str(tmp_path / "r.jsonl"), "--dry_run"])).run()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[run ]")]
    # no pretraining-corpus tokenizer: the one scratch run trains on the SST-2 train split's own 4k vocabulary
    assert [line.split(":")[0] for line in lines] == ["[run ] tokenizer/sentiment/any/seed0",
                                                      "[run ] finetune-scratch/sentiment/forge/seed42"]
    assert "--text_columns text --vocab_size 4000" in lines[0] and "sentiment/train.jsonl" in lines[0]
    assert f"--tokenizer_name {tmp_path / 'tokenizer-sentiment-4000'} " in lines[1]
    # SRL's tokenizer reads its `tokens` word lists
    quality.Harness(quality.parse(["--from_scratch", "--tasks", "srl", "--architectures", "forge",
                                   "--task_tokenizers", "srl", "--runs_dir", str(tmp_path / "srl"),
                                   "--results", str(tmp_path / "s.jsonl"), "--dry_run"])).run()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[run ]")]
    assert "srl/train.jsonl --text_columns tokens --vocab_size 8000" in lines[0]
    # --added_tokens: the task tokenizer keeps those strings whole, in a folder of its own
    quality.Harness(quality.parse(["--from_scratch", "--tasks", "summarization", "--architectures", "forge",
                                   "--added_tokens", "summarization:#Person1#", "summarization:#Person2#",
                                   "--runs_dir", str(tmp_path), "--results", str(tmp_path / "a.jsonl"),
                                   "--dry_run"])).run()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[run ]")]
    assert "--added_tokens '#Person1#' '#Person2#'" in lines[0]
    assert f"--tokenizer_name {tmp_path / 'tokenizer-summarization-added2'} " in lines[1]
    with pytest.raises(SystemExit):
        quality.parse(["--added_tokens", "sentiment:#x#"])  # no tokenizer of its own for sentiment


def test_qa_scratch_runs_start_from_glove_rows_unless_told_not_to(tmp_path, capsys):
    """--task_word_vectors: SQuAD scratch runs (Forge and BART alike) get --init_embeddings with the GloVe file under
    --data_dir by default; false removes it; a pretrained start never gets it; a missing file is refused up front."""
    def commands(*extra):
        quality.Harness(quality.parse(["--from_scratch", "--tasks", "qa", "sentiment", "--runs_dir", str(tmp_path),
                                       "--results", str(tmp_path / f"r{len(extra)}.jsonl"), "--dry_run", *extra])).run()
        return [line for line in capsys.readouterr().out.splitlines() if line.startswith("[run ] finetune")]

    glove = str(Path(quality.parse([]).data_dir) / quality.TASK_WORD_VECTORS["qa"])
    lines = commands()
    assert len(lines) == 4  # qa and sentiment, forge and bart
    assert all((f"--init_embeddings {glove}" in line) == ("/qa/" in line) for line in lines), lines
    assert not any("--init_embeddings" in line for line in commands("--task_word_vectors", "false"))
    quality.Harness(quality.parse(["--pretrained", str(tmp_path / "p"), "--architectures", "forge", "--tasks", "qa",
                                   "--runs_dir", str(tmp_path), "--results", str(tmp_path / "p.jsonl"),
                                   "--dry_run"])).run()
    assert "--init_embeddings" not in capsys.readouterr().out
    missing = quality.Harness(quality.parse(["--from_scratch", "--tasks", "qa", "--data_dir", str(tmp_path / "none"),
                                             "--runs_dir", str(tmp_path / "m"), "--results", str(tmp_path / "m.jsonl"),
                                             "--dry_run"]))
    with pytest.raises(SystemExit, match="--task_word_vectors false"):  # no wordvectors/ there
        missing.finetune("qa", "forge", 42, None, tmp_path / "tokenizer")


def test_a_run_folder_or_record_of_another_command_is_refused_not_reused(tmp_path):
    """Two experiments in one --runs_dir (here: another tokenizer) must not share a run folder: the second would be
    recorded with the first one's result (a finished folder is recovered) or resume its checkpoints."""
    harness = quality.Harness(quality.parse(["--runs_dir", str(tmp_path), "--results", str(tmp_path / "r.jsonl")]))
    folder = tmp_path / "sentiment-forge-scratch-seed42"
    first = [sys.executable, "-m", "recipes.sentiment", "--tokenizer_name", "tok-8000"]
    harness.claim(folder, first)
    folder.mkdir()
    (folder / "all_results.json").write_text(json.dumps({"eval_accuracy": 80.0}))
    (folder / "model.safetensors").write_bytes(b"")
    row = harness.execute("finetune-scratch/sentiment/forge/seed42", first, folder, {"metric": "eval_accuracy"})
    assert row["recovered_from_folder"] and row["value"] == 80.0  # the same command: recovered
    second = first[:-1] + ["tok-16000"]
    with pytest.raises(SystemExit, match="records finetune-scratch/sentiment/forge/seed42 for another command"):
        harness.execute("finetune-scratch/sentiment/forge/seed42", second, folder, {"metric": "eval_accuracy"})
    other = quality.Harness(quality.parse(["--runs_dir", str(tmp_path), "--results", str(tmp_path / "other.jsonl")]))
    with pytest.raises(SystemExit, match="belongs to another command"):
        other.execute("finetune-scratch/sentiment/forge/seed42", second, folder, {"metric": "eval_accuracy"})
    assert not (tmp_path / "other.jsonl").exists()  # nothing recorded for the refused run
    # another interpreter path is the same command
    assert other.execute("finetune-scratch/sentiment/forge/seed42", ["python3"] + first[1:], folder, {})["rc"] == 0


def test_gpu_quality_script_dry_run_lists_the_bf16_runs():
    """bench/gpu_quality.sh --dry-run (no GPU needed): tokenizer, bf16 pretraining, the five tasks in bf16."""
    out = subprocess.run(["bash", "bench/gpu_quality.sh", "--dry-run"], cwd=REPO, check=True, capture_output=True,
                         text=True, timeout=120).stdout
    lines = [line for line in out.splitlines() if line.startswith("[run ]")]
    assert len(lines) == 7 and "tokenization.train" in lines[0] and "recipes.pretrain" in lines[1]
    assert all("--bf16 true" in line for line in lines[1:])
    assert {line.split("-m recipes.")[1].split()[0] for line in lines[2:]} == set(quality.TASKS)


def test_curve_points_say_whether_they_scored_the_whole_validation_split():
    curve_scope = quality.curve_scope
    qa = {"results": {"eval_total": 3423}}
    assert curve_scope(qa, [{"eval_f1": 30.0, "eval_total": 3423}, {"eval_f1": 40.0, "eval_total": 3423}]) == \
        "whole validation split"
    assert curve_scope(qa, [{"eval_f1": 30.0, "eval_total": 200}]) == "validation subset"
    assert curve_scope({"results": {"eval_accuracy": 80.0}}, [{"eval_accuracy": 79.0}]) == "validation subset"
