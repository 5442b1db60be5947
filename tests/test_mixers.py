"""Conv and recurrent token mixers (``encoder_mixer`` / ``decoder_mixer``): what attention guarantees, they do too.

Every head's shared behaviour (``HeadBehaviour`` of test_modeling.py: save/load, padding invariance, gradients,
gradient checkpointing, loss falls) runs once per mixer setting; generation with the cache, incremental decoding,
causality, configs and the remote-code folder follow.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess

import pytest
import torch
from model_tester import BOS, VOCAB, source_batch, target_ids, tiny_config
from test_modeling import TestBaseModel as _BaseModel
from test_modeling import TestConditionalGeneration as _ConditionalGeneration
from test_modeling import TestQuestionAnswering as _QuestionAnswering
from test_modeling import TestSequenceClassification as _SequenceClassification
from test_modeling import TestTokenClassification as _TokenClassification
from test_modeling import REPO_ROOT, assert_close, assert_loads_as_remote_code
from transformers import DynamicCache, EncoderDecoderCache

from modeling import ForgeConfig, ForgeForConditionalGeneration, ForgeForSequenceClassification
from modeling.mixers_forge import ForgeMixerCacheLayer, run_directions_unpacked, run_skipping_padding

# Kernel 3 so that 8-token targets roll the decoder's window several times; the hybrid puts a mixer in layer 0,
# the layer the cache's length (hence the decoder's positions) is read from.
MIXERS = {
    "conv": dict(encoder_mixer="conv", decoder_mixer="conv", conv_kernel_size=3),
    "gru": dict(encoder_mixer="recurrent", decoder_mixer="recurrent"),
    "lstm": dict(encoder_mixer="recurrent", decoder_mixer="recurrent", recurrent_cell="lstm"),
    "hybrid": dict(encoder_mixer=["conv", "attention"], decoder_mixer=["recurrent", "attention"], conv_kernel_size=3),
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def mixer_model(mixer: str, **overrides) -> ForgeForConditionalGeneration:
    torch.manual_seed(0)
    return ForgeForConditionalGeneration(tiny_config(**{**MIXERS[mixer], **overrides})).eval()


# ---------------------------------------------------------------------------------------------------------------
# Every head, every mixer: the behaviour test_modeling.py asserts for attention
# ---------------------------------------------------------------------------------------------------------------


class WithMixers:
    """Runs the inherited HeadBehaviour tests once per mixer (the LSTM differs from the GRU only in its cache state,
    which the generation tests below cover)."""

    @pytest.fixture(autouse=True, params=["conv", "gru", "hybrid"])
    def _mixer(self, request):
        self.mixer_overrides = MIXERS[request.param]

    def model(self, **overrides):
        return super().model(**{**self.mixer_overrides, **overrides})


class TestConditionalGeneration(WithMixers, _ConditionalGeneration):
    pass


class TestBaseModel(WithMixers, _BaseModel):
    pass


class TestSequenceClassification(WithMixers, _SequenceClassification):
    pass


class TestTokenClassification(WithMixers, _TokenClassification):
    pass


class TestQuestionAnswering(WithMixers, _QuestionAnswering):
    pass


# ---------------------------------------------------------------------------------------------------------------
# Generation with the cache
# ---------------------------------------------------------------------------------------------------------------

MODES = {
    "greedy": dict(do_sample=False),
    "beam": dict(num_beams=3, num_return_sequences=2, do_sample=False),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("mixer", MIXERS)
def test_generate_cached_equals_uncached(mixer, mode):
    model, inputs = mixer_model(mixer), source_batch()
    kwargs = dict(max_new_tokens=10, min_new_tokens=10, **MODES[mode])  # longer than the conv window
    cached = model.generate(**inputs, use_cache=True, **kwargs)
    uncached = model.generate(**inputs, use_cache=False, **kwargs)
    assert cached.shape == (inputs["input_ids"].shape[0] * MODES[mode].get("num_return_sequences", 1), 11)
    assert torch.equal(cached, uncached)
    assert (cached[:, 0] == BOS).all()


@pytest.mark.parametrize("mixer", MIXERS)
def test_static_cache_generate_equals_dynamic_cache(mixer):
    model, inputs = mixer_model(mixer), source_batch()
    kwargs = dict(max_new_tokens=8, min_new_tokens=8, **MODES["beam"])
    assert torch.equal(model.generate(**inputs, **kwargs),
                       model.generate(**inputs, cache_implementation="static", **kwargs))


@pytest.mark.parametrize("mixer", MIXERS)
def test_incremental_decoding_equals_full_forward(mixer):
    model, inputs = mixer_model(mixer), source_batch()
    decoder_input_ids = target_ids(length=8)
    with torch.no_grad():
        full = model(**inputs, decoder_input_ids=decoder_input_ids).logits
        encoder_outputs = model.get_encoder()(**inputs)
        step = dict(encoder_outputs=encoder_outputs, attention_mask=inputs["attention_mask"], use_cache=True)
        out = model(**step, decoder_input_ids=decoder_input_ids[:, :2])  # prefill two tokens, then one at a time
        cache, logits = out.cache, [out.logits]
        for t in range(2, decoder_input_ids.shape[1]):
            out = model(**step, decoder_input_ids=decoder_input_ids[:, t : t + 1], cache=cache)
            logits.append(out.logits)
    assert_close(torch.cat(logits, dim=1), full)
    assert cache.get_seq_length() == decoder_input_ids.shape[1]
    kinds = model.config.layer_mixers("decoder")
    slots = cache.self_attention_cache.layers
    assert [isinstance(slots[i], ForgeMixerCacheLayer) for i in range(len(kinds))] == [k != "attention" for k in kinds]


def test_beam_reorder_moves_the_mixer_state_with_its_beam():
    """Beam search reorders the conv window and the recurrent state (a stale state gives other tokens later)."""
    model = mixer_model("hybrid", encoder_mixer="conv", decoder_mixer=["conv", "recurrent"])
    inputs = source_batch(batch=1)
    with torch.no_grad():
        encoder_outputs = model.get_encoder()(**inputs)
        two = {"encoder_outputs": (encoder_outputs.last_hidden_state.repeat(2, 1, 1),),
               "attention_mask": inputs["attention_mask"].repeat(2, 1), "use_cache": True}
        prefix = torch.tensor([[BOS, 7, 8], [BOS, 9, 10]])
        cache = model(**two, decoder_input_ids=prefix).cache
        model._reorder_cache(cache, torch.tensor([1, 1]))  # both beams continue the second prefix
        nxt = torch.tensor([[11], [11]])
        reordered = model(**two, decoder_input_ids=nxt, cache=cache).logits
        full = model(**two, decoder_input_ids=torch.cat([prefix[[1, 1]], nxt], dim=1)).logits[:, -1:]
    assert_close(reordered, full)


def test_a_cache_from_an_attention_decoder_is_refused():
    attention = ForgeForConditionalGeneration(tiny_config()).eval()
    conv = mixer_model("conv")
    inputs = source_batch()
    with torch.no_grad():
        cache = attention(**inputs, decoder_input_ids=target_ids(length=3), use_cache=True).cache
        with pytest.raises(ValueError, match="decoder_mixer"):
            conv(**inputs, decoder_input_ids=target_ids(length=1), cache=cache, use_cache=True)


def test_a_user_built_cache_without_config_works():
    model, inputs = mixer_model("conv"), source_batch()
    decoder_input_ids = target_ids(length=4)
    with torch.no_grad():
        full = model(**inputs, decoder_input_ids=decoder_input_ids).logits
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())  # layers grow lazily
        first = model(**inputs, decoder_input_ids=decoder_input_ids[:, :3], cache=cache, use_cache=True).logits
        last = model(**inputs, decoder_input_ids=decoder_input_ids[:, 3:], cache=cache, use_cache=True).logits
    assert_close(torch.cat([first, last], dim=1), full)


# ---------------------------------------------------------------------------------------------------------------
# Causality and padding
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mixer", MIXERS)
def test_encoder_sees_both_ways_and_decoder_only_the_past(mixer):
    model = mixer_model(mixer)
    source = source_batch(batch=1, padded=False)["input_ids"]
    changed = source.clone()
    changed[0, 1] = (changed[0, 1] + 1 - 5) % (VOCAB - 5) + 5  # a token AFTER encoder position 0
    decoder_input_ids = target_ids(batch=1, length=6)
    with torch.no_grad():
        a = model(input_ids=source, decoder_input_ids=decoder_input_ids)
        b = model(input_ids=changed, decoder_input_ids=decoder_input_ids)
    assert not torch.allclose(a.encoder_last_hidden_state[0, 0], b.encoder_last_hidden_state[0, 0])
    later = decoder_input_ids.clone()
    later[0, 3] = (later[0, 3] + 1 - 5) % (VOCAB - 5) + 5
    with torch.no_grad():
        c = model(input_ids=source, decoder_input_ids=later)
    assert_close(c.logits[0, :3], a.logits[0, :3])  # positions before the change: untouched
    assert not torch.allclose(c.logits[0, 3:], a.logits[0, 3:])  # at and after it: changed


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("cell", [torch.nn.GRU, torch.nn.LSTM])
def test_recurrent_layer_skips_padding_wherever_it_is(cell, bidirectional):
    """Right, left and inner padding: each row's outputs and final state are those of its real tokens alone."""
    rnn = cell(4, 3, batch_first=True, bidirectional=bidirectional)
    inputs = torch.randn(4, 6, 4)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1], [1, 0, 1, 1, 0, 1]]).bool()
    with torch.no_grad():
        out, state = run_skipping_padding(rnn, inputs, mask, None)
        for row in range(4):
            alone_out, alone_state = rnn(inputs[row : row + 1, mask[row]])
            assert_close(out[row, mask[row]], alone_out[0])
            assert (out[row, ~mask[row]] == 0).all()
            for got, want in zip(state if isinstance(state, tuple) else (state,),
                                 alone_state if isinstance(alone_state, tuple) else (alone_state,)):
                assert_close(got[:, row], want[:, 0])


@pytest.mark.parametrize("cell", [torch.nn.GRU, torch.nn.LSTM])
def test_encoder_recurrence_without_packing_matches_the_packed_run_and_its_gradients(cell):
    """The encoder's fast path (each direction unpacked, real tokens reversed in place for the right-to-left one):
    right, left, inner padding and an empty row give what each row alone gives, zeros at padding, and the packed
    run's gradients, in training mode too."""
    torch.manual_seed(0)
    rnn = cell(4, 3, batch_first=True, bidirectional=True)
    inputs = torch.randn(5, 6, 4, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1], [1, 0, 1, 1, 0, 1],
                         [0, 0, 0, 0, 0, 0]]).bool()
    out = run_directions_unpacked(rnn, inputs, mask)
    packed, _ = run_skipping_padding(rnn, inputs, mask, None)
    assert_close(out, packed)
    assert (out[~mask] == 0).all()
    with torch.no_grad():
        for row in range(4):
            assert_close(out[row, mask[row]], rnn(inputs[row : row + 1, mask[row]])[0][0])
    weights = [inputs, *rnn.parameters()]
    target = torch.randn_like(out)
    got = torch.autograd.grad((out * target).sum(), weights)
    want = torch.autograd.grad((packed * target).sum(), weights)
    for g, w in zip(got, want):
        assert_close(g, w)


@pytest.mark.parametrize("mixer", ["conv", "gru", "lstm"])
def test_left_padded_batch_gives_each_row_its_own_encoder_states(mixer):
    """Left padding (some tokenizers pad on the left): real tokens see exactly what they see unpadded. The
    positions are rotary, so only the mixers could make a difference."""
    model = ForgeForSequenceClassification(tiny_config(position_embedding_type="rotary", **MIXERS[mixer])).eval()
    ids = torch.tensor([[11, 12, 13, 14, 2], [0, 0, 21, 22, 2]])
    mask = (ids != 0).long()
    with torch.no_grad():
        batched = model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        alone = model.get_encoder()(input_ids=ids[1:, 2:]).last_hidden_state
    assert_close(batched[1, 2:], alone[0])


# ---------------------------------------------------------------------------------------------------------------
# Config, weights, loading
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(encoder_mixer="convolution"), "`encoder_mixer` must be one of"),
        (dict(decoder_mixer="atention"), "did you mean 'attention'"),
        (dict(encoder_mixer=["conv", "attention", "conv"]), "`encoder_mixer` lists 3 mixers but `encoder_layers` is 2"),
        (dict(decoder_mixer=["conv"]), "`decoder_mixer` lists 1 mixers but `decoder_layers` is 2"),
        (dict(encoder_mixer=3), "`encoder_mixer` must be a mixer name"),
        (dict(conv_kernel_size=4), "`conv_kernel_size` must be a positive odd integer"),
        (dict(recurrent_cell="rnn"), "`recurrent_cell` must be one of"),
        (dict(encoder_mixer="recurrent", d_model=31, encoder_attention_heads=1, decoder_attention_heads=1,
              position_embedding_type="learned"), "so `d_model` must be even"),
    ],
)
def test_config_validation_names_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        tiny_config(**kwargs)


def test_hybrid_config_round_trips_through_config_json(tmp_path):
    config = tiny_config(encoder_layers=4, encoder_mixer=["conv", "conv", "attention", "attention"],
                         decoder_mixer="recurrent", recurrent_cell="lstm", conv_kernel_size=5)
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["encoder_mixer"] == ["conv", "conv", "attention", "attention"]
    assert (saved["decoder_mixer"], saved["recurrent_cell"], saved["conv_kernel_size"]) == ("recurrent", "lstm", 5)
    loaded = ForgeConfig.from_pretrained(tmp_path)
    assert loaded.layer_mixers("encoder") == ["conv", "conv", "attention", "attention"]
    assert loaded.layer_mixers("decoder") == ["recurrent"] * 2


def test_a_config_without_mixer_fields_is_all_attention_with_the_same_weight_names(tmp_path):
    """Configs and checkpoints written before the mixers existed load unchanged: no field, attention everywhere."""
    config = tiny_config()
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    for key in ("encoder_mixer", "decoder_mixer", "conv_kernel_size", "recurrent_cell"):
        saved.pop(key, None)
    (tmp_path / "config.json").write_text(json.dumps(saved))
    old = ForgeConfig.from_pretrained(tmp_path)
    assert old.layer_mixers("encoder") == old.layer_mixers("decoder") == ["attention", "attention"]
    names = set(ForgeForConditionalGeneration(old).state_dict())
    assert not any("mixer" in name for name in names)
    assert {"model.encoder.layers.0.self_attn.qkv_proj.weight", "model.decoder.layers.1.self_attn.out_proj.bias",
            "model.encoder.layers.1.self_attn_norm.weight"} <= names


def test_mixer_layers_hold_only_their_own_weights():
    names = set(mixer_model("hybrid").state_dict())
    assert {"model.encoder.layers.0.mixer.in_proj.weight", "model.encoder.layers.0.mixer.weight",
            "model.encoder.layers.0.mixer_norm.weight", "model.decoder.layers.0.mixer.rnn.weight_hh_l0",
            "model.decoder.layers.0.encoder_attn.kv_proj.weight",  # cross-attention stays
            "model.encoder.layers.1.self_attn.qkv_proj.weight"} <= names
    assert not any(n.startswith(("model.encoder.layers.0.self_attn", "model.decoder.layers.0.self_attn."))
                   for n in names)
    assert "model.encoder.layers.0.mixer.rnn.weight_hh_l0_reverse" not in names  # layer 0 of the encoder is conv
    gru = set(mixer_model("gru").state_dict())
    assert "model.encoder.layers.0.mixer.rnn.weight_hh_l0_reverse" in gru  # bidirectional in the encoder
    assert "model.decoder.layers.0.mixer.rnn.weight_hh_l0_reverse" not in gru  # left to right in the decoder


def test_encoder_head_loads_the_mixer_encoder_of_a_seq2seq_checkpoint(tmp_path):
    seq2seq = mixer_model("hybrid")
    seq2seq.save_pretrained(tmp_path)
    head = ForgeForSequenceClassification.from_pretrained(tmp_path).eval()
    inputs = source_batch()
    with torch.no_grad():
        assert_close(head.get_encoder()(**inputs).last_hidden_state,
                     seq2seq.get_encoder()(**inputs).last_hidden_state, atol=0)


def test_remote_code_folder_with_mixers_loads_where_the_package_is_not_importable(tmp_path):
    assert_loads_as_remote_code(mixer_model("hybrid", encoder_mixer=["recurrent", "conv"]), tmp_path)
    assert (tmp_path / "folder" / "mixers_forge.py").is_file()


# ---------------------------------------------------------------------------------------------------------------
# Selecting a mixer from the recipes and the speed bench
# ---------------------------------------------------------------------------------------------------------------


def test_recipes_take_a_mixer_list_from_config_overrides():
    from recipes.core.args import ModelArguments

    overrides = "d_model=64,encoder_mixer=[conv,conv,attention,attention],decoder_mixer=recurrent"
    args = ModelArguments(config_overrides=overrides)
    assert args.config_kwargs() == {"d_model": 64, "encoder_mixer": ["conv", "conv", "attention", "attention"],
                                    "decoder_mixer": "recurrent"}
    config = ForgeConfig.from_pretrained("forge-small", **args.config_kwargs())
    assert config.layer_mixers("encoder") == ["conv", "conv", "attention", "attention"]
    with pytest.raises(ValueError, match="unbalanced brackets"):
        ModelArguments(config_overrides="encoder_mixer=[conv,attention").config_kwargs()


def test_speed_bench_runs_a_hybrid_mixer(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_model", REPO_ROOT / "bench" / "bench_model.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    with pytest.raises(SystemExit):
        bench.parse_args(["--help"])
    help_text = capsys.readouterr().out
    assert "--encoder-mixer" in help_text and "--decoder-mixer" in help_text and "--recurrent-cell" in help_text
    threads = torch.get_num_threads()
    try:
        out = bench.main(["--quick", "--preset", "forge-tiny", "--threads", "1", "--silent", "--scaling-lens", "",
                          "--encoder-mixer", "conv,attention", "--decoder-mixer", "recurrent",
                          "--json", str(tmp_path / "r.json")])
    finally:
        torch.set_num_threads(threads)
    assert out["meta"]["mixers"] == {"encoder": ["conv", "attention"], "decoder": ["recurrent", "recurrent"],
                                     "conv_kernel_size": 7, "recurrent_cell": "gru"}
    assert out["training"]["forge"]["tokens_per_s"] > 0 and out["generate_beam4"]["forge"]["new_tokens_per_s"] > 0
    assert "encoder conv,attention / decoder recurrent" in out["table"]


def test_mixers_compare_script_records_a_run_and_resumes(tmp_path):
    """bench/mixers_compare.sh (the README's mixer comparison) in its smoke mode: one run is recorded with its
    scores, mixers and parameter count; rerunning skips it; the table script renders the record."""
    from recipe_helpers import SAMPLE_DIR, train_small_tokenizer

    train_small_tokenizer().save_pretrained(tmp_path / "tok")
    results = tmp_path / "mixers.jsonl"
    env = {**os.environ, "SMOKE": "1", "TOK": str(tmp_path / "tok"), "DATA": str(SAMPLE_DIR), "RESULTS": str(results),
           "RUNS": str(tmp_path / "runs"), "ONLY": "sentiment-hybrid", "JOBS": "1", "OMP_NUM_THREADS": "1"}
    script = str(REPO_ROOT / "bench" / "mixers_compare.sh")
    first = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout + first.stderr
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    log = (tmp_path / "runs" / "logs.txt").read_text()
    assert [(r["run"], r["rc"]) for r in rows] == [("sentiment-hybrid", 0)], log
    assert rows[0]["config"]["encoder_mixer"] == ["conv", "attention"] and rows[0]["params"] > 0
    assert 0 <= rows[0]["eval_accuracy"] <= 100
    again = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "skip sentiment-hybrid" in again.stdout
    assert len(results.read_text().splitlines()) == 1

    spec = importlib.util.spec_from_file_location("mixers_table", REPO_ROOT / "bench" / "mixers_table.py")
    mixers_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mixers_table)
    table = mixers_table.main([str(results)])
    assert "| hybrid (encoder conv/attention; decoder conv/attention) |" in table
    assert f"{rows[0]['eval_accuracy']:.1f} / {rows[0]['eval_macro_f1']:.1f}" in table and "not run" in table


def test_lora_adapts_the_mixer_projections():
    """--use_lora's default targets reach the conv mixer's projections (not only attention's)."""
    from peft import LoraConfig, get_peft_model

    from recipes.core.lora import target_modules_pattern

    model = get_peft_model(mixer_model("hybrid"), LoraConfig(r=2, target_modules=target_modules_pattern(None),
                                                             task_type="SEQ_2_SEQ_LM"))
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    for part in ("encoder.layers.0.mixer.in_proj.lora_A", "encoder.layers.0.mixer.out_proj.lora_B",
                 "decoder.layers.0.mixer.out_proj.lora_A", "encoder.layers.1.self_attn.qkv_proj.lora_A"):
        assert any(part in n for n in names), part
