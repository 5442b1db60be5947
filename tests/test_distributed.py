"""Multi-process launches every recipe shares (recipes/core/distributed.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recipes.core.distributed import gathered_model, prepare_launch

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("variable,name", [("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")])
def test_sharded_launch_without_gpu_is_refused(monkeypatch, variable, name):
    """accelerate silently turns an FSDP/ZeRO launch on CPU into independent processes; the recipes refuse it."""
    if torch.accelerator.is_available():
        pytest.skip("this machine has an accelerator")
    monkeypatch.setenv(variable, "true")
    with pytest.raises(RuntimeError, match=f"asks for {name}.*torchrun"):
        prepare_launch()


def test_fsdp_config_on_cpu_is_refused_by_a_recipe(tmp_path):
    """The real `accelerate launch --config_file fsdp.yaml` of a fine-tuning recipe on CPU stops with the clear error."""
    if torch.accelerator.is_available():
        pytest.skip("this machine has an accelerator")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / "recipes/accelerate_configs/fsdp.yaml"),
        "-m", "recipes.sentiment", "--config_name", "forge-tiny", "--output_dir", str(tmp_path / "out"),
        "--train_file", str(REPO / "recipes/sample_data/sentiment/train.jsonl"), "--do_train",
    ]
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "asks for FSDP" in result.stdout + result.stderr
    assert not (tmp_path / "out").exists()


class _ShardedTrainer:
    """The two facts gathered_model reads from a Trainer under FSDP: it is sharded, and the gathered state dict."""

    is_fsdp_enabled, is_deepspeed_enabled = True, False

    def __init__(self, state: dict, main: bool = True) -> None:
        self.model_wrapped = object()
        self._main = main
        self.accelerator = type("Acc", (), {"get_state_dict": lambda _self, _wrapped: state})()

    def is_world_process_zero(self) -> bool:
        return self._main


@pytest.mark.parametrize("head", ["ForgeForSequenceClassification", "ForgeForConditionalGeneration", "ForgeForTokenClassification"])
def test_gathered_model_rebuilds_every_head_unsharded(head):
    """Fine-tuning heads (not only pretraining's seq2seq model) are rebuilt from the gathered state dict, tied weights too."""
    import modeling
    from modeling import ForgeConfig

    config = ForgeConfig.from_pretrained("forge-tiny", num_labels=3)
    model = getattr(modeling, head)(config)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    full = gathered_model(_ShardedTrainer(state), model)
    assert type(full) is type(model) and full is not model
    for key, value in full.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert gathered_model(_ShardedTrainer(state, main=False), model) is None
    with pytest.raises(RuntimeError, match="does not match"):
        gathered_model(_ShardedTrainer({k: v for k, v in state.items() if "layers.0" not in k}), model)
