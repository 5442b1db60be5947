"""--use_lora (issue 15): PEFT LoRA fine-tuning through a recipe; the adapter loads on the base folder, also with
remote code in a Python without Forge, and equals the merged folder the recipe exports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import modeling  # noqa: F401
from modeling import ForgeConfig, ForgeForConditionalGeneration
from recipe_helpers import SAMPLE_DIR, train_small_tokenizer
from recipes import sentiment
from recipes.publishing.export import save_hub_folder
from recipes.core.lora import target_modules_pattern

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    tokenizer = train_small_tokenizer(800)
    config = ForgeConfig.from_pretrained("forge-tiny", vocab_size=len(tokenizer))
    base = save_hub_folder(ForgeForConditionalGeneration(config), tokenizer, root / "base")
    out = root / "sentiment-lora"
    metrics = sentiment.main([
        "--model_name_or_path", str(base), "--use_lora", "true", "--lora_r", "2", "--lora_alpha", "4",
        "--train_file", str(SAMPLE_DIR / "sentiment/train.jsonl"),
        "--validation_file", str(SAMPLE_DIR / "sentiment/validation.jsonl"),
        "--max_train_samples", "32", "--max_eval_samples", "8", "--do_train", "--do_eval", "--max_steps", "4",
        "--per_device_train_batch_size", "8", "--learning_rate", "1e-2", "--report_to", "none",
        "--disable_tqdm", "true", "--save_steps", "4", "--dataloader_pin_memory", "false", "--seed", "3",
        "--output_dir", str(out),
    ])
    return base, out, metrics


def _inputs(folder: Path) -> dict:
    tok = AutoTokenizer.from_pretrained(folder)
    return dict(tok(["a fine film", "dull and long , sadly"], padding=True, return_tensors="pt"))


def test_recipe_writes_adapter_and_merged_folder(lora_run):
    base, out, metrics = lora_run
    adapter = out / "lora_adapter"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    assert not list(adapter.glob("*.bin")) and not (out / "pytorch_model.bin").exists(), "weights are safetensors only"
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(base.resolve())
    assert "classifier" in cfg["modules_to_save"]
    assert (out / "model.safetensors").is_file() and "eval_accuracy" in metrics
    card = (out / "README.md").read_text()
    assert "lora_r" in card


def test_adapter_on_base_equals_merged_folder(lora_run):
    from peft import PeftModel

    base, out, _ = lora_run
    merged = AutoModelForSequenceClassification.from_pretrained(out).eval()
    backbone = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2)
    adapted = PeftModel.from_pretrained(backbone, out / "lora_adapter").eval()
    inputs = _inputs(out)
    with torch.no_grad():
        torch.testing.assert_close(adapted(**inputs).logits, merged(**inputs).logits, atol=1e-5, rtol=1e-4)
    merged_again = adapted.merge_and_unload()
    with torch.no_grad():
        torch.testing.assert_close(merged_again(**inputs).logits, merged(**inputs).logits, atol=1e-5, rtol=1e-4)


def test_lora_trains_a_small_fraction(lora_run):
    from peft import LoraConfig, get_peft_model

    base, _, _ = lora_run
    backbone = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2)
    total = sum(p.numel() for p in backbone.parameters())
    model = get_peft_model(backbone, LoraConfig(r=2, lora_alpha=4, target_modules=target_modules_pattern(None),
                                                modules_to_save=["classifier"], task_type="SEQ_CLS"))
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("self_attn.qkv_proj.lora_A" in n for n in names) and any("self_attn.out_proj.lora_A" in n for n in names)
    assert any("ffn.fc1.lora_A" in n for n in names) and any("classifier" in n for n in names)
    assert not any("classifier" in n and "lora_" in n for n in names), "the head is trained in full, not adapted"
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable < total / 4


def test_unknown_target_module_is_refused():
    with pytest.raises(ValueError, match="q_lin.*choose from"):
        target_modules_pattern("q_lin,fc1")


def test_adapter_loads_with_remote_code_without_forge(lora_run, tmp_path):
    base, out, _ = lora_run
    inputs = _inputs(out)
    merged = AutoModelForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        expected = merged(**inputs).logits
    torch.save({"inputs": inputs, "logits": expected}, tmp_path / "expected.pt")
    script = textwrap.dedent(
        f"""
        import sys
        class BlockForge:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("modeling", "tokenization", "recipes"):
                    raise ModuleNotFoundError(name)
        sys.meta_path.insert(0, BlockForge())
        sys.path = [p for p in sys.path if p and not p.startswith({str(REPO)!r})]
        import torch
        from peft import PeftModel
        from transformers import AutoModelForSequenceClassification
        backbone = AutoModelForSequenceClassification.from_pretrained({str(base)!r}, num_labels=2, trust_remote_code=True)
        assert type(backbone).__module__.startswith("transformers_modules"), type(backbone).__module__
        model = PeftModel.from_pretrained(backbone, {str(out / "lora_adapter")!r}).eval()
        data = torch.load("expected.pt")
        with torch.no_grad():
            torch.testing.assert_close(model(**data["inputs"]).logits, data["logits"], atol=1e-5, rtol=1e-4)
        print("LORA-REMOTE-OK")
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and "LORA-REMOTE-OK" in result.stdout, result.stdout[-2000:] + result.stderr[-3000:]


def test_default_targets_cover_cross_attention():
    """In the seq2seq model the defaults adapt cross-attention's q_proj/kv_proj too, and never the tied lm_head."""
    from peft import LoraConfig, get_peft_model

    model = ForgeForConditionalGeneration(ForgeConfig.from_pretrained("forge-tiny"))
    model = get_peft_model(model, LoraConfig(r=2, target_modules=target_modules_pattern(None), task_type="SEQ_2_SEQ_LM"))
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    for part in ("encoder_attn.q_proj.lora_A", "encoder_attn.kv_proj.lora_A", "decoder.layers.1.ffn.fc2.lora_B"):
        assert any(part in n for n in names), part
    assert not any("lm_head" in n or "shared" in n for n in names)


@pytest.mark.parametrize("head", ["qa", "srl", "seq2seq"])
def test_the_new_modules_of_head_options_train_in_full(head):
    """QA's lexical-match vector, SRL's predicate context and the seq2seq copy generator are new at fine-tuning:
    under LoRA they must train (frozen, they would stay random), like the head itself."""
    from types import SimpleNamespace

    from modeling import ForgeForQuestionAnswering, ForgeForTokenClassification
    from recipes.core.lora import apply_lora

    if head == "qa":
        model, new = ForgeForQuestionAnswering(ForgeConfig.from_pretrained("forge-tiny", qa_lexical_match=True)), "lexical_match"
    elif head == "seq2seq":
        config = ForgeConfig.from_pretrained("forge-tiny", copy_attention=True)
        model, new = ForgeForConditionalGeneration(config), "copy_generator"
    else:
        config = ForgeConfig.from_pretrained("forge-tiny", classifier_predicate_context=True, predicate_marker_id=5)
        model, new = ForgeForTokenClassification(config), "predicate_context"
    args = SimpleNamespace(lora_r=2, lora_alpha=4, lora_dropout=0.0, lora_target_modules=None)
    names = [n for n, p in apply_lora(model, args).named_parameters() if p.requires_grad]
    assert any(f"{new}.modules_to_save" in n for n in names), names
    assert not any("shared" in n for n in names)
