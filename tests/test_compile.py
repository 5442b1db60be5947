"""``torch.compile`` training on every head: no graph break, and no recompilation once each batch shape was seen.

Compiled with the ``aot_eager`` backend: it traces forward and backward exactly as inductor would (the same Dynamo
graphs, guards and AOT-autograd joint graph), so it catches every graph break and recompile, without inductor's code
generation time. Batch shapes vary as they do in a recipe: two length buckets (what ``--pad_to_multiple_of`` gives)
and a smaller last batch.
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
from model_tester import source_batch, target_ids, tiny_config
from torch._dynamo.utils import counters

from modeling import (
    ForgeForConditionalGeneration,
    ForgeForQuestionAnswering,
    ForgeForSequenceClassification,
    ForgeForTokenClassification,
)

# (batch, source length): lengths are bucket sizes (multiples of 8), the 2-row batch is an epoch's last one.
SHAPES = [(4, 16), (4, 24), (2, 16), (4, 16), (4, 24), (2, 24)]


def _labels(cls, batch: int, length: int) -> dict[str, torch.Tensor]:
    if cls is ForgeForConditionalGeneration:
        return {"labels": target_ids(batch, 8)}
    if cls is ForgeForSequenceClassification:
        return {"labels": torch.arange(batch) % 3}
    if cls is ForgeForTokenClassification:
        return {"labels": torch.randint(0, 3, (batch, length))}
    return {"start_positions": torch.zeros(batch, dtype=torch.long), "end_positions": torch.full((batch,), 2)}


def _compiled_training(model: torch.nn.Module, shapes, padded: bool = True) -> None:
    compiled = torch.compile(model, backend="aot_eager")
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    for batch, length in shapes:
        inputs = {**source_batch(batch, length, padded=padded), **_labels(type(model), batch, length)}
        loss = compiled(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize(
    "cls",
    [ForgeForConditionalGeneration, ForgeForSequenceClassification, ForgeForTokenClassification, ForgeForQuestionAnswering],
)
def test_compiled_training_has_no_graph_break_and_no_recompile_per_step(cls):
    model = cls(tiny_config()).train()
    _compiled_training(model, SHAPES)
    assert sum(counters["graph_break"].values()) == 0, dict(counters["graph_break"])
    compiled_after_warmup = counters["stats"]["unique_graphs"]
    # A handful of graphs for 3 distinct shapes (Dynamo's automatic dynamic shapes may fold them into fewer).
    assert 1 <= compiled_after_warmup <= 4, compiled_after_warmup
    # Every later step reuses them: more steps with the same shapes compile nothing new.
    _compiled_training(model, SHAPES[:3])
    assert counters["stats"]["unique_graphs"] == compiled_after_warmup
    assert sum(counters["graph_break"].values()) == 0


@pytest.mark.parametrize(
    "overrides",
    [
        {"position_embedding_type": "rotary", "ffn_type": "gated", "norm_type": "rmsnorm"},
        # The recurrent mixer is not listed: it packs padded rows with data-dependent lengths (graph breaks).
        {"encoder_mixer": "conv", "decoder_mixer": "conv"},
    ],
    ids=["rotary-gated-rmsnorm", "conv-mixers"],
)
def test_compiled_seq2seq_variants_have_no_graph_break(overrides):
    model = ForgeForConditionalGeneration(tiny_config(**overrides)).train()
    _compiled_training(model, SHAPES[:3], padded=False)
    assert sum(counters["graph_break"].values()) == 0, dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] <= 4


def test_compiled_loss_and_gradients_match_eager():
    torch.manual_seed(0)
    model = ForgeForConditionalGeneration(tiny_config()).train()
    inputs = {**source_batch(3, 16), "labels": target_ids(3, 8)}
    eager = model(**inputs).loss
    eager.backward()
    eager_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    compiled = torch.compile(model, backend="aot_eager")(**inputs).loss
    compiled.backward()
    torch.testing.assert_close(compiled, eager)
    for got, want in zip([p.grad for p in model.parameters()], eager_grads):
        torch.testing.assert_close(got, want)


def test_pad_to_multiple_of_defaults_to_buckets_under_torch_compile():
    from recipes.core.args import COMPILE_PAD_MULTIPLE, DataArguments

    class Args:
        torch_compile = True

    assert DataArguments().collator_pad_multiple(Args()) == COMPILE_PAD_MULTIPLE
    Args.torch_compile = False
    assert DataArguments().collator_pad_multiple(Args()) is None
    assert DataArguments(pad_to_multiple_of=8).collator_pad_multiple(Args()) == 8
    with pytest.raises(ValueError, match="--pad_to_multiple_of"):
        DataArguments(pad_to_multiple_of=0)


def test_recipe_with_torch_compile_trains_without_graph_break_or_recompile_per_step(tmp_path):
    """The sentiment recipe as a user runs it with --torch_compile true (aot_eager: no code generation time), on
    self-attention layers. (The recipe's from-scratch default is a BiLSTM encoder since session 20, and dynamo still
    breaks the graph at every recurrent layer: "Dynamo does not support RNN, GRU, or LSTM"; README, "Speed".)"""
    from recipe_helpers import SAMPLE_DIR, train_small_tokenizer
    from transformers import TrainerCallback

    from recipes import sentiment

    tokenizer = tmp_path / "tok"
    train_small_tokenizer(vocab_size=600).save_pretrained(tokenizer)
    graphs_per_step = []

    class CountGraphs(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            graphs_per_step.append(counters["stats"]["unique_graphs"])

    argv = [
        "--config_name", "forge-tiny", "--tokenizer_name", str(tokenizer), "--output_dir", str(tmp_path / "out"),
        "--train_file", str(SAMPLE_DIR / "sentiment" / "train.jsonl"), "--max_train_samples", "44",
        "--num_train_epochs", "2", "--per_device_train_batch_size", "8", "--save_strategy", "no",
        "--torch_compile", "true", "--torch_compile_backend", "aot_eager", "--report_to", "none",
        "--disable_tqdm", "true", "--dataloader_pin_memory", "false", "--do_train", "--config_overrides",
        "encoder_mixer=attention",
    ]
    sentiment.main(argv, callbacks=[CountGraphs()])
    assert sum(counters["graph_break"].values()) == 0, dict(counters["graph_break"])
    # 12 steps (44 rows: 5 full batches and one of 4, per epoch); graphs are compiled in the first epoch only.
    assert len(graphs_per_step) == 12
    assert graphs_per_step[-1] == graphs_per_step[5] <= 4, graphs_per_step


@pytest.mark.parametrize("position_embedding_type", ["sinusoidal", "rotary", "learned"])
def test_compiled_static_cache_decoding_has_no_graph_break_and_gives_the_eager_tokens(position_embedding_type):
    """transformers' automatic compilation of the decoding step (static cache, ``compile_config``) on Forge: one
    graph, no break (a tensor cache length once broke it at the position-table slice), the eager path's tokens.

    Sinusoidal and rotary tables run past ``max_position_embeddings`` (64 here): the decoder grows them to the static
    cache's length before the compiled steps, which could not grow them.
    """
    from transformers import CompileConfig

    torch.manual_seed(0)
    model = ForgeForConditionalGeneration(tiny_config(position_embedding_type=position_embedding_type)).eval()
    new_tokens = 40 if position_embedding_type == "learned" else 72
    inputs = source_batch(1, 12, padded=False)
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, num_beams=1)
    eager = model.generate(**inputs, **kwargs, disable_compile=True)
    config = CompileConfig(backend="aot_eager", fullgraph=False)
    config._compile_all_devices = True  # not an __init__ argument: transformers reads the attribute (CPU opt-in)
    compiled = model.generate(**inputs, **kwargs, cache_implementation="static", compile_config=config)
    assert counters["stats"]["unique_graphs"] >= 1, "generate() did not compile the decoding step"
    assert sum(counters["graph_break"].values()) == 0, dict(counters["graph_break"])
    assert torch.equal(compiled, eager)
