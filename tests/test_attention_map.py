"""bench/attention_map.py: the cross-attention heat map of a seq2seq folder (the README picture's script)."""

from __future__ import annotations

import importlib.util

import matplotlib.image
import torch
from model_tester import tiny_config
from recipe_helpers import REPO_ROOT, train_small_tokenizer

from modeling import ForgeForConditionalGeneration

_spec = importlib.util.spec_from_file_location("attention_map", REPO_ROOT / "bench" / "attention_map.py")
attention_map = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(attention_map)


def _tiny_folder(path):
    tokenizer = train_small_tokenizer(vocab_size=400)
    config = tiny_config(
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id, decoder_start_token_id=tokenizer.bos_token_id,
    )  # fmt: skip
    model = ForgeForConditionalGeneration(config)
    model.generation_config.max_new_tokens = 5
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return tokenizer


def test_cross_attention_rows_are_distributions_over_the_source(tmp_path):
    tokenizer = _tiny_folder(tmp_path)
    source = "Ein Mann fährt Fahrrad."
    source_tokens, target_tokens, weights = attention_map.cross_attention(tmp_path, source)
    assert len(source_tokens) == len(tokenizer(source)["input_ids"])
    assert weights.shape == (2, 4, len(target_tokens), len(source_tokens))  # layers, heads, generated, source
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))


def test_script_writes_a_png_per_layer_choice(tmp_path):
    _tiny_folder(tmp_path / "model")
    single = attention_map.main([str(tmp_path / "model"), "Ein Hund schwimmt.", "--output", str(tmp_path / "one.png")])
    grid = attention_map.main(
        [str(tmp_path / "model"), "Ein Hund schwimmt.", "--layer", "all", "--output", str(tmp_path / "all.png")]
    )
    one, both = matplotlib.image.imread(single), matplotlib.image.imread(grid)
    assert one.ndim == 3 and both.shape[1] > one.shape[1]  # the grid has one panel per layer, side by side
