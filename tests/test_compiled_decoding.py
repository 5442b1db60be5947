"""``generate(..., compiled_decoding=True)``: Forge's compiled decoding loop gives the tokens of transformers' own loop.

Most tests compile with the ``aot_eager`` backend (the same Dynamo graphs and guards as inductor, without its code
generation time); one runs inductor, the backend users get.
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
from model_tester import EOS, source_batch, tiny_config
from torch._dynamo.utils import counters
from transformers import GenerationConfig

from modeling import ForgeForConditionalGeneration, generation_forge


@pytest.fixture(autouse=True)
def _aot_eager(monkeypatch):
    torch._dynamo.reset()
    counters.clear()
    for name, function in (("_compiled_step", generation_forge.decode_step),
                           ("_compiled_greedy_step", generation_forge.greedy_step)):  # fmt: skip
        monkeypatch.setattr(generation_forge, name, torch.compile(function, backend="aot_eager", dynamic=False))
    yield
    torch._dynamo.reset()


def _model(**overrides) -> ForgeForConditionalGeneration:
    torch.manual_seed(0)
    return ForgeForConditionalGeneration(tiny_config(**overrides)).eval()


def _both(model, inputs: dict, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' loop, then the compiled one, from the same seed."""
    torch.manual_seed(1234)
    plain = model.generate(**inputs, **kwargs)
    torch.manual_seed(1234)
    compiled = model.generate(**inputs, compiled_decoding=True, **kwargs)
    return plain, compiled


def _compiled_graphs() -> int:
    return counters["stats"]["unique_graphs"]


@pytest.mark.parametrize("position_embedding_type", ["sinusoidal", "rotary", "learned"])
def test_greedy_tokens_equal_transformers_loop_on_a_padded_batch(position_embedding_type):
    """Three sources of different lengths (padded), past the 64-row position table where the table can grow: the
    same tokens, one compiled graph, no graph break."""
    model = _model(position_embedding_type=position_embedding_type)
    new_tokens = 40 if position_embedding_type == "learned" else 72
    plain, compiled = _both(model, source_batch(), max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    assert plain.shape == (3, new_tokens + 1)
    assert torch.equal(compiled, plain)
    assert _compiled_graphs() == 1
    assert sum(counters["graph_break"].values()) == 0, dict(counters["graph_break"])


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(do_sample=True, top_k=20, temperature=1.3),
        dict(repetition_penalty=1.5, no_repeat_ngram_size=2, min_new_tokens=3),
        dict(forced_bos_token_id=5, forced_eos_token_id=EOS, max_length=12),
    ],
    ids=["sampling", "penalties", "forced-tokens"],
)
def test_processors_and_sampling_act_as_in_transformers_loop(kwargs):
    """transformers' own logits processors and warpers run in the compiled loop, and sampling draws the same tokens
    from the same seed."""
    plain, compiled = _both(_model(), source_batch(), **{"max_new_tokens": 10, **kwargs})
    assert torch.equal(compiled, plain)


def test_rows_that_end_early_are_padded():
    """A row that meets EOS ends there and gets padding afterwards, as in transformers' loop. EOS is set to the
    fourth token the first row generates, so that row ends early and the others run on."""
    model = _model()
    inputs = source_batch()
    free = model.generate(**inputs, max_new_tokens=12)
    stop = int(free[0, 4])
    plain, compiled = _both(model, inputs, max_new_tokens=12, eos_token_id=stop)
    assert torch.equal(compiled, plain)
    new = compiled[0, 1:]  # after the decoder start token
    first_stop = int((new == stop).nonzero()[0])
    assert first_stop <= 3 and (new[first_stop + 1 :] == model.config.pad_token_id).all(), compiled


def test_a_minimum_length_holds_back_eos_until_it_is_reached():
    """min_new_tokens past the point where a row would stop: EOS is suppressed until then, as transformers does."""
    model = _model()
    inputs = source_batch()
    free = model.generate(**inputs, max_new_tokens=12)
    stop = int(free[0, 4])
    plain, compiled = _both(model, inputs, max_new_tokens=12, min_new_tokens=7, eos_token_id=stop)
    assert torch.equal(compiled, plain)
    assert not (compiled[:, 1:7] == stop).any()


@pytest.mark.parametrize(
    "kwargs,fused",
    [
        (dict(), True),
        (dict(min_new_tokens=3, max_new_tokens=8), True),
        (dict(repetition_penalty=1.2), False),
        (dict(do_sample=True), False),
        (dict(stop_strings=None, max_time=30.0), False),
    ],
    ids=["default", "min-new-tokens", "penalty", "sampling", "max-time"],
)
def test_plain_greedy_requests_choose_tokens_inside_the_compiled_step(monkeypatch, kwargs, fused):
    """Greedy search with at most a minimum length, EOS and max_length takes the loop whose compiled step also picks
    the token and checks EOS; any other processor or criterion keeps transformers' own, applied in Python."""
    calls = []
    real = generation_forge._greedy_loop
    monkeypatch.setattr(generation_forge, "_greedy_loop", lambda *args: calls.append(1) or real(*args))
    model = _model()
    plain, compiled = _both(model, source_batch(), **{"max_new_tokens": 6, **kwargs})
    assert torch.equal(compiled, plain)
    assert bool(calls) is fused


def test_a_decoder_prefix_of_several_tokens_is_continued_as_in_transformers_loop():
    """``decoder_input_ids`` given to generate(): the prefix runs in one eager step, then the compiled steps go on."""
    model = _model()
    prefix = torch.tensor([[1, 7, 8, 9]] * 3)
    plain, compiled = _both(model, {**source_batch(), "decoder_input_ids": prefix}, max_new_tokens=8)
    assert torch.equal(plain[:, :4], prefix)
    assert torch.equal(compiled, plain)


def test_another_length_in_the_same_bucket_reuses_the_compiled_step():
    """Sources of 9 and 20 tokens (both pad to one 64-token bucket) and 8 or 20 new tokens (one cache bucket):
    one graph for all calls."""
    model = _model()
    for length, new_tokens in [(9, 8), (20, 8), (9, 20)]:
        plain, compiled = _both(model, source_batch(2, length), max_new_tokens=new_tokens)
        assert torch.equal(compiled, plain)
    assert _compiled_graphs() == 1


def test_beam_search_and_unsupported_requests_run_transformers_loop():
    """Beam search, return_dict_in_generate and conv/recurrent decoder mixers go to transformers' loop, unchanged."""
    model = _model()
    inputs = source_batch()
    for kwargs in (dict(num_beams=3, num_return_sequences=2), dict(return_dict_in_generate=True)):
        plain, compiled = _both(model, inputs, max_new_tokens=6, **kwargs)
        plain = plain.sequences if hasattr(plain, "sequences") else plain
        compiled = compiled.sequences if hasattr(compiled, "sequences") else compiled
        assert torch.equal(compiled, plain)
    mixers = _model(decoder_mixer="conv")
    plain, compiled = _both(mixers, inputs, max_new_tokens=6)
    assert torch.equal(compiled, plain)
    assert _compiled_graphs() == 0


def test_generation_config_switch_turns_it_on_for_every_call(monkeypatch):
    """``generation_config.compiled_decoding = True`` (what a pipeline reads) takes the compiled loop without the
    argument, and ``compiled_decoding=False`` in a call turns it off again."""
    model = _model()
    inputs = source_batch()
    plain = model.generate(**inputs, max_new_tokens=6)
    model.generation_config.compiled_decoding = True
    assert torch.equal(model.generate(**inputs, max_new_tokens=6), plain)
    assert _compiled_graphs() == 1
    counters.clear()
    assert torch.equal(model.generate(**inputs, max_new_tokens=6, compiled_decoding=False), plain)
    assert _compiled_graphs() == 0
    # a generation config of the call's own (keyword or positional) is read the same way
    model.generation_config.compiled_decoding = False
    calls = []
    real = generation_forge._greedy_loop
    monkeypatch.setattr(generation_forge, "_greedy_loop", lambda *args: calls.append(1) or real(*args))
    config = GenerationConfig(max_new_tokens=6, compiled_decoding=True)
    assert torch.equal(model.generate(inputs["input_ids"], config, attention_mask=inputs["attention_mask"]), plain)
    assert torch.equal(model.generate(**inputs, generation_config=config), plain)
    assert len(calls) == 2


def test_inductor_gives_the_eager_tokens(monkeypatch):
    """The backend users get: inductor's generated code, batch 1, the tokens of transformers' loop."""
    monkeypatch.setattr(generation_forge, "_compiled_step", None)
    monkeypatch.setattr(generation_forge, "_compiled_greedy_step", None)
    model = _model()
    plain, compiled = _both(model, source_batch(1, 12, padded=False), max_new_tokens=16, min_new_tokens=16)
    assert torch.equal(compiled, plain)


def test_bfloat16_weights_take_the_reduction_matvecs_and_give_the_eager_tokens(monkeypatch):
    """bf16 weights on a CPU: the compiled step writes its few-row matmuls as multiply-and-sum (fp32 accumulation;
    the graph holds no ``linear``), and the tokens are still those of transformers' loop on the same bf16 model."""
    graphs = []

    def recording_backend(graph, example_inputs):
        graphs.append(graph)
        return graph.forward

    step = torch.compile(generation_forge.greedy_step, backend=recording_backend, dynamic=False)
    monkeypatch.setattr(generation_forge, "_compiled_greedy_step", step)
    model = _model().to(torch.bfloat16)
    plain, compiled = _both(model, source_batch(1, 12, padded=False), max_new_tokens=16, min_new_tokens=16)
    assert torch.equal(compiled, plain)
    assert len(graphs) == 1
    code = graphs[0].code
    assert "linear" not in code and code.count("sum") == 2 * 6 + 1, code  # 2 layers x 6 projections, and lm_head


def test_int8_weights_loaded_with_torchao_decode_compiled_with_their_eager_tokens(monkeypatch, tmp_path):
    """The fastest batch-1 path (bench/decode_latency.py, ``int8_compiled_decoding``): a saved folder loaded with
    transformers' ``TorchAoConfig(Int8WeightOnlyConfig())`` in bf16. Its linear layers hold torchao's int8 tensors,
    which the compiled step leaves to torchao (no multiply-and-sum rewrite) and inductor lowers to the int8
    matrix-vector kernel; on a padded batch the tokens are those of transformers' loop on the same int8 model."""
    torchao_quantization = pytest.importorskip("torchao.quantization")
    from torch._inductor.utils import run_and_get_code
    from transformers import TorchAoConfig

    monkeypatch.setattr(generation_forge, "_compiled_step", None)
    monkeypatch.setattr(generation_forge, "_compiled_greedy_step", None)
    _model().save_pretrained(tmp_path)
    config = TorchAoConfig(torchao_quantization.Int8WeightOnlyConfig())
    model = ForgeForConditionalGeneration.from_pretrained(tmp_path, dtype=torch.bfloat16, quantization_config=config)
    qkv = model.model.decoder.layers[0].self_attn.qkv_proj.weight
    assert isinstance(qkv, pytest.importorskip("torchao.utils").TorchAOBaseTensor) and qkv.dtype == torch.bfloat16
    inputs = source_batch()
    torch.manual_seed(1234)
    plain = model.generate(**inputs, max_new_tokens=16, min_new_tokens=16)
    compiled, code = run_and_get_code(lambda: model.generate(**inputs, max_new_tokens=16, min_new_tokens=16,
                                                             compiled_decoding=True))
    assert torch.equal(compiled, plain)
    assert any("_weight_int8pack_mm" in source for source in code), "the int8 kernel is not in the compiled step"
