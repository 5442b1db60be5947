"""The benchmark's code path on a micro shape, once: the results have the structure the README and cards read.

Timings are never asserted (the machine is shared); only that every measurement ran for both models and that
the derived figures (ratios, MFU, memory, scaling exponents, goals) are present and finite.
"""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch


REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_model", REPO_ROOT / "bench" / "bench_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def results(bench, tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "results.json"
    threads = torch.get_num_threads()
    try:
        out = bench.main(["--quick", "--preset", "forge-tiny", "--threads", "1", "--silent", "--json", str(path)])
    finally:
        torch.set_num_threads(threads)  # the benchmark sets it process-wide; other tests share the worker
    return out, json.loads(path.read_text())


def _finite_positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_every_measurement_has_both_models_and_a_ratio(results):
    out, _ = results
    for key in ("training", "generate_greedy", "generate_beam4", "encoder_forward"):
        entry = out[key]
        assert set(entry) >= {"forge", "bart", "ratio", "unit"}, key
        rate = entry["unit"].replace("/s", "_per_s")
        for model in ("forge", "bart"):
            assert len(entry[model]["times_s"]) == 1  # --quick: one round
            assert _finite_positive(entry[model][rate]), (key, model)
        assert _finite_positive(entry["ratio"])


def test_training_has_mfu_and_peak_memory(results):
    out, _ = results
    training = out["training"]
    assert _finite_positive(training["flops_per_step"])
    for model in ("forge", "bart"):
        assert _finite_positive(training[model]["mfu_vs_mm_proj"])
        assert _finite_positive(training[model]["mfu_vs_mm_square"])
        memory = training["memory"][model]
        assert memory["peak_bytes"] >= memory["static_bytes"] > 0
        assert memory["peak_step_bytes"] > 0  # a step allocates activations and gradients
    assert set(out["matmul"]) == {"mm_proj", "mm_square"}


def test_scaling_rows_and_goals(results):
    out, _ = results
    rows = out["scaling"]["rows"]
    assert [r["src_len"] for r in rows] == [16, 32]
    assert "memory_exponent" in rows[1]["forge"] and "memory_exponent" in rows[1]["bart"]
    assert len(out["goals"]) == 4 and all(isinstance(g["met"], bool) for g in out["goals"].values())
    assert "batch-1 greedy <= 2.2 ms per new token" in out["goals"]


def test_single_request_latency(results):
    """Issue 19: batch-1 greedy generate() in ms per new token, and a whole pipeline call (tokenize, generate,
    decode) on a 20-word request, for both models through the same pipeline class."""
    out, _ = results
    for key, field in (("latency_greedy_batch1", "ms_per_new_token"), ("latency_pipeline", "latency_ms")):
        for model in ("forge", "bart"):
            assert _finite_positive(out[key][model][field]), (key, model)
        assert _finite_positive(out[key]["ratio"])
    assert out["latency_greedy_batch1"]["shape"]["batch"] == 1
    assert out["latency_pipeline"]["shape"]["input_words"] == 20
    assert "| pipeline latency ms" in out["table"]


def test_json_round_trip_and_table(results):
    out, on_disk = results
    assert on_disk["meta"]["torch_threads"] == 1
    assert on_disk["meta"]["params"]["forge"] > 0 and on_disk["meta"]["params"]["bart"] > 0
    assert on_disk["meta"]["structural_differences"]
    assert "| train tokens/s" in out["table"] and "Forge/BART" in out["table"]


def test_mixers_speed_table_reads_bench_json(results, tmp_path):
    """bench/mixers_table.py --speed: one row per bench JSON, Forge's rate with its ratio to BART of the same run."""
    _, on_disk = results
    path = tmp_path / "attention.json"
    path.write_text(json.dumps(on_disk))
    spec = importlib.util.spec_from_file_location("mixers_table", REPO_ROOT / "bench" / "mixers_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.main(["--speed", str(path)])
    row = next(line for line in table.splitlines() if line.startswith("| attention |"))
    train = on_disk["training"]
    assert f"{train['forge']['tokens_per_s']:,.1f} ({train['forge']['tokens_per_s'] / train['bart']['tokens_per_s']:.2f}x)" in row
    latency = on_disk["latency_greedy_batch1"]  # lower is better: the ratio is BART's time over Forge's
    forge_ms, bart_ms = latency["forge"]["ms_per_new_token"], latency["bart"]["ms_per_new_token"]
    assert f"{forge_ms:,.1f} ({bart_ms / forge_ms:.2f}x)" in row


@pytest.mark.parametrize("what", ["train", "greedy"])
def test_profile_breakdown_finds_each_kind_of_work(what, tmp_path):
    """bench/profile_model.py's category breakdown (what the README's speed-up bounds are computed from)."""
    spec = importlib.util.spec_from_file_location("profile_model", REPO_ROOT / "bench" / "profile_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = tmp_path / "profile.json"
    threads = torch.get_num_threads()
    try:
        module.main(["--what", what, "--preset", "forge-tiny", "--batch", "2", "--src-len", "16", "--tgt-len", "8",
                     "--new-tokens", "4", "--threads", "1", "--rows", "0", "--json", str(path)])
    finally:
        torch.set_num_threads(threads)
    report = json.loads(path.read_text())
    # The category patterns match this torch's operator names: each kind of work the step must do is found.
    expected = ("matmul", "attention", "log_softmax", "optimizer") if what == "train" else ("matmul", "attention")
    for model in ("forge", "bart"):
        seconds = report["seconds"][model]
        assert all(seconds[k] > 0 for k in expected), seconds
        assert seconds["other"] > 0 and seconds["total"] >= max(seconds.values()), seconds
    bounds = report["forge_over_bart_speedup"]
    # Removing overhead can only help: the bounds are ordered.
    assert bounds["matmuls_only"] >= bounds["all_overhead_removed"] > 0
    if what == "greedy":
        for model in ("forge", "bart"):
            phases = report["generation_phases_seconds"][model]
            assert all(phases[k] > 0 for k in ("encoder", "decoder", "lm_head", "total")), phases
        assert _finite_positive(report["forge_over_bart_speedup_if_forge_decoder_free"])


def test_profile_decode_step_split_covers_every_layer(tmp_path):
    """bench/profile_model.py --what decode_step (smoke): one cached batch-1 step split per layer and phase."""
    spec = importlib.util.spec_from_file_location("profile_model", REPO_ROOT / "bench" / "profile_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = tmp_path / "step.json"
    threads = torch.get_num_threads()
    try:
        module.main(["--what", "decode_step", "--preset", "forge-tiny", "--batch", "1", "--src-len", "16",
                     "--new-tokens", "3", "--threads", "1", "--json", str(path)])
    finally:
        torch.set_num_threads(threads)
    report = json.loads(path.read_text())
    split = report["split_seconds"]
    layers = {name.split(".")[0] for name in split if name.startswith("layer")}
    assert len(layers) == 2 and all(f"{layer}.ffn" in split for layer in layers), split  # forge-tiny: 2 layers
    assert all(value >= 0 for value in split.values()) and split["lm_head"] > 0
    assert sum(split.values()) <= report["step_seconds"] * 1.01
    assert report["memory_floor_bytes"] > 0


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO_ROOT / "bench").glob("*.py")))
def test_every_bench_script_runs_as_its_readme_says(script, tmp_path):
    """bench/README.md runs each script as `python bench/<script>`: with the package installed under the forge.*
    namespace, the checkout's top-level folders are importable only if the script puts the checkout on the path
    (bench_model.py and compare_loss.py did not, and failed at their first import)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # as a user's shell: no test-runner path
    done = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / script), "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage" in done.stdout.lower()


def test_feature_probe_reports_every_encoder_layer(tmp_path):
    """bench/feature_probe.py (the README's LoRA diagnosis): one row per hidden state of the encoder, with the mean
    pairwise cosine and a linear-probe accuracy, from a saved Forge folder and a text/label split."""
    from recipe_helpers import SAMPLE_DIR, train_small_tokenizer

    from modeling import ForgeConfig, ForgeForConditionalGeneration
    from recipes.publishing.export import save_hub_folder

    tokenizer = train_small_tokenizer()
    config = ForgeConfig.from_pretrained("forge-tiny", vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    # a Hub-ready folder as the recipes write it: its configs name the folder's own code (auto_map), which a fresh
    # process must not be asked to trust when Forge's classes are registered
    save_hub_folder(ForgeForConditionalGeneration(config), tokenizer, tmp_path / "base", task="text2text-generation")
    import os
    import subprocess
    import sys

    # a fresh process, as a user runs it: the Auto classes must find Forge's model AND tokenizer classes there
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "feature_probe.py"), "--base", str(tmp_path / "base"),
                           "--data-dir", str(SAMPLE_DIR / "sentiment"), "--train-rows", "60"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(done.stdout.strip().splitlines()[-1])["layers"]
    assert [r["hidden_states"] for r in rows] == list(range(config.encoder_layers + 1))
    assert all(-1.0 <= r["mean_pairwise_cosine"] <= 1.0 and 0.0 <= r["probe_accuracy"] <= 100.0 for r in rows)
    assert all(r["mean_norm"] > 0 for r in rows)


def test_ab_versions_compares_two_commits_in_one_process(tmp_path):
    """bench/ab_versions.py imports modeling/ at an older commit beside the current one, gives both the same weights,
    checks they generate the same tokens and times them interleaved (the 'nothing got slower' check of issue 15)."""
    import shutil
    import subprocess
    import sys

    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("needs a git checkout (the older modeling/ comes from `git archive`)")
    path = tmp_path / "ab.json"
    done = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "ab_versions.py"), "--ref", "HEAD", "--quick",
                           "--threads", "1", "--json", str(path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(path.read_text())
    assert report["same_greedy_tokens"] is True
    for key in ("train_tokens", "greedy", "beam4", "greedy_batch1", "encoder_tokens"):
        assert _finite_positive(report[key]["ratio_new_over_old"]), key


def test_compiled_training_measurement(bench, tmp_path):
    """--compiled-training times eager and torch.compile training steps of both models in one interleaved run and
    adds issue 19's compiled-vs-eager goal (ratios only; timings are never asserted)."""
    threads = torch.get_num_threads()
    try:
        out = bench.main(["--quick", "--preset", "forge-tiny", "--threads", "1", "--silent", "--compiled-training",
                          "--latency-src-len", "0", "--json", str(tmp_path / "c.json")])
    finally:
        torch.set_num_threads(threads)
    compiled = out["training_compiled"]
    for key in ("forge_eager", "forge_compiled", "bart_eager", "bart_compiled"):
        assert _finite_positive(compiled[key]["tokens_per_s"]), key
    assert _finite_positive(compiled["compiled_over_eager"]["forge"])
    assert "compiled training >= 1.15x eager Forge" in out["goals"]
    assert "latency_greedy_batch1" not in out  # --latency-src-len 0 skips the latency measurements
    assert "| train tokens/s, torch.compile" in out["table"]


def test_decode_latency_variants_generate_the_same_tokens():
    """bench/decode_latency.py: batch-1 greedy with the dynamic and the static cache and with bf16 weights, Forge and
    BART, interleaved; every fp32 variant must reproduce the eager tokens (the compiled variant is left to the bench: it compiles for
    minutes)."""
    spec = importlib.util.spec_from_file_location("decode_latency", REPO_ROOT / "bench" / "decode_latency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        out = module.main(["--quick", "--variants", "eager,static,bf16", "--threads", "1", "--steady-state",
                           "--pipeline"])
        beams = module.main(["--quick", "--variants", "eager", "--threads", "1", "--beams", "2"])
    finally:
        torch.set_num_threads(threads)
    for key in ("forge_eager", "bart_eager"):  # --pipeline: one timed pipeline call per variant; --beams: beam search
        assert _finite_positive(out[key]["pipeline_ms"]) and len(out[key]["pipeline_times_s"]) == 1, key
        assert beams[key]["same_tokens_as_eager"] is True and _finite_positive(beams[key]["ms_per_new_token"]), key
    assert out["meta"]["pipeline"]["input_words"] == 20 and beams["meta"]["beams"] == 2
    for key in ("forge_eager", "forge_static", "bart_eager"):
        assert out[key]["same_tokens_as_eager"] is True, key
        assert out[key]["new_tokens_equal_to_eager"] == 1.0, key
        assert _finite_positive(out[key]["ms_per_new_token"]), key
        assert "steady_ms_per_step" in out[key] and len(out[key]["short_times_s"]) == 1, key  # --steady-state
    for key in ("forge_bf16", "bart_bf16"):  # bf16 weights: timed, and their agreement with fp32 reported
        assert 0.0 <= out[key]["new_tokens_equal_to_eager"] <= 1.0, key
        assert _finite_positive(out[key]["ms_per_new_token"]), key
