"""Speed-related code that tests can pin without timing anything: the MFU formula and peak table, the NaN guard's
single reduced check, the chunked cross-entropy (equal to the plain path) and decoding fast paths (same tokens)."""

from __future__ import annotations

import pytest
import torch
from model_tester import tiny_config

from modeling import PRESETS, ForgeConfig, ForgeForConditionalGeneration
from recipes.core.callbacks import NaNGuardCallback, _first_non_finite_parameter, build_callbacks
from recipes.core.mfu import ThroughputCallback, mfu, peak_flops, train_flops


# --------------------------------------------------------------------------------------------------------------
# MFU
# --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, tflops",
    [
        ("NVIDIA H200", 989.0),
        ("NVIDIA H100 80GB HBM3", 989.0),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA A100 80GB PCIe", 312.0),
        ("NVIDIA L4", 121.0),
        ("NVIDIA L40S", 362.0),  # not mistaken for an L4
    ],
)
def test_peak_from_device_name(name, tflops):
    assert peak_flops(name) == tflops * 1e12


@pytest.mark.parametrize("name", [None, "", "cpu", "Tesla T4", "Intel(R) Xeon(R)"])
def test_unknown_device_reports_no_mfu(name):
    assert peak_flops(name) is None
    assert mfu(1e9, 100.0, name) is None


def test_train_flops_is_6_x_matmul_parameters_per_token_plus_attention():
    """Without the attention terms (length 1) the count is the textbook 6 x (non-embedding matmul parameters,
    lm_head included) per token, for the encoder and decoder tokens each run through their own weights."""
    config = ForgeConfig(**PRESETS["forge-small"])
    d, v = config.d_model, config.vocab_size
    enc_params = config.encoder_layers * (4 * d * d + 2 * d * config.encoder_ffn_dim)
    dec_params = config.decoder_layers * (6 * d * d + 2 * d * config.decoder_ffn_dim) + d * v
    cross_kv = config.decoder_layers * 2 * d * d  # applied to the encoder's tokens
    batch = 4
    expected = 6 * batch * (enc_params + cross_kv + dec_params)
    attention = 3 * batch * (config.encoder_layers * 4 * d + config.decoder_layers * (2 * d + 4 * d))
    assert train_flops(config, batch, 1, 1) == pytest.approx(expected + attention)
    # Attention grows with the square of the length: doubling src and tgt more than doubles the count.
    assert train_flops(config, batch, 256, 64) > 2 * train_flops(config, batch, 128, 32)


def test_mfu_is_flops_times_rate_over_peak():
    # 1 TFLOP per sample at 494.5 samples/s on an H200 (989 TFLOP/s) is half the peak.
    assert mfu(1e12, 494.5, "NVIDIA H200") == pytest.approx(0.5)


def test_throughput_callback_reports_each_interval_and_the_steady_state(monkeypatch):
    """Per-log figures cover the steps since the previous log only; MFU per device on a GPU of known peak;
    ``steady`` spans the first log to the last (the warm-up interval left out)."""
    from types import SimpleNamespace

    import recipes.core.mfu as mfu_module

    clock = [100.0]
    monkeypatch.setattr(mfu_module.time, "perf_counter", lambda: clock[0])
    args = SimpleNamespace(train_batch_size=8, gradient_accumulation_steps=2, n_gpu=1)  # 16 blocks per step
    state = SimpleNamespace(global_step=0)
    meter = ThroughputCallback(flops_per_sample=1e12, tokens_per_sample=512, device_name="NVIDIA H200")
    assert meter.training_log_values(args, state) == {}  # before training began
    meter.on_train_begin(args, state, None)
    clock[0], state.global_step = 110.0, 10  # warm-up: 160 blocks in 10 s
    first = meter.training_log_values(args, state)
    assert first["samples_per_second"] == 16.0 and first["corpus_tokens_per_second"] == 16.0 * 512
    assert first["mfu"] == pytest.approx(16e12 / 989e12, abs=1e-4)
    clock[0], state.global_step = 112.0, 20  # steady: 160 blocks in 2 s
    assert meter.training_log_values(args, state)["samples_per_second"] == 80.0
    clock[0], state.global_step = 114.0, 30
    meter.training_log_values(args, state)
    steady = meter.steady(args)
    assert steady["samples_per_second"] == 80.0 and steady["mfu"] == pytest.approx(80e12 / 989e12, abs=1e-4)
    assert "mfu" not in ThroughputCallback(1e12, 512, device_name=None)._rates(args, (0.0, 0), (1.0, 1))


# --------------------------------------------------------------------------------------------------------------
# NaN guard: one reduced value per step
# --------------------------------------------------------------------------------------------------------------
def test_nan_guard_check_names_the_broken_weight_and_passes_finite_ones():
    model = ForgeForConditionalGeneration(tiny_config())
    assert _first_non_finite_parameter(model) is None
    with torch.no_grad():
        model.model.decoder.layers[1].ffn.fc2.weight[0, 0] = float("inf")
    assert _first_non_finite_parameter(model) == "model.decoder.layers.1.ffn.fc2.weight"
    with torch.no_grad():
        model.model.decoder.layers[1].ffn.fc2.weight[0, 0] = 0.0
        model.model.encoder.layers[0].self_attn.qkv_proj.bias[3] = float("nan")
    assert _first_non_finite_parameter(model) == "model.encoder.layers.0.self_attn.qkv_proj.bias"


def test_nan_guard_check_does_not_fire_on_huge_but_finite_weights():
    """Norms that overflow to inf although every weight is finite: the scan finds no culprit, nothing fires."""
    model = ForgeForConditionalGeneration(tiny_config())
    with torch.no_grad():
        model.lm_head.weight.fill_(3e38)
    assert _first_non_finite_parameter(model) is None


def test_nan_guard_reads_the_device_only_where_a_step_persists_and_never_lets_a_bad_save_through():
    """The weight flag stays on the device between reads: a weight that turns inf at a step that neither saves, logs,
    evaluates nor stops is caught at the next step that does (that step's save cancelled), and at the end of
    training; the guard runs after every callback that sets those flags."""
    from types import SimpleNamespace

    from transformers import TrainerControl, TrainingArguments

    args = TrainingArguments(output_dir="unused", learning_rate=1e-3, max_grad_norm=1.0, report_to="none")
    model = ForgeForConditionalGeneration(tiny_config())
    guard = NaNGuardCallback(read_every=1000)
    state, control = SimpleNamespace(global_step=1), TrainerControl()
    guard.on_step_end(args, state, control, model=model)
    with torch.no_grad():
        model.model.decoder.layers[1].ffn.fc2.weight[0, 0] = float("inf")
    state.global_step = 2
    guard.on_step_end(args, state, control, model=model)  # nothing persists at this step: not read yet
    assert not guard.triggered and guard._pending is not None
    state.global_step, control.should_save = 3, True
    guard.on_step_end(args, state, control, model=model)
    assert guard.triggered and not control.should_save and control.should_training_stop
    assert "step 3" in guard.message and "decoder.layers.1.ffn.fc2.weight" in guard.message

    late = NaNGuardCallback(read_every=1000)  # a NaN in the last steps, read when training ends
    state, control = SimpleNamespace(global_step=4), TrainerControl()
    late.on_step_end(args, state, control, model=model)
    assert not late.triggered
    late.on_train_end(args, state, control, model=model)
    assert late.triggered

    budget = TrainingArguments(output_dir="unused", report_to="none")
    budget.max_train_minutes, budget.eval_every_minutes = 1.0, 0.5  # the callbacks that set save / evaluate / stop
    assert isinstance(build_callbacks(budget, metric="accuracy")[-1], NaNGuardCallback)


# --------------------------------------------------------------------------------------------------------------
# Chunked cross-entropy (config.loss_chunk_size)
# --------------------------------------------------------------------------------------------------------------
def _loss_and_grads(model, inputs):
    model.zero_grad()
    out = model(**inputs)
    out.loss.backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("chunk", [1, 5, 7, 1000])  # 7 does not divide 3 x 9 target tokens; 1000 is one chunk
def test_chunked_loss_and_gradients_equal_the_plain_path(chunk):
    from model_tester import source_batch, target_ids

    model = ForgeForConditionalGeneration(tiny_config()).train()
    labels = target_ids(3, 9)
    labels[1, 6:] = -100  # padded targets are ignored by both paths
    inputs = {**source_batch(3, 10), "labels": labels}
    plain, plain_grads = _loss_and_grads(model, inputs)
    model.config.loss_chunk_size = chunk
    chunked, chunked_grads = _loss_and_grads(model, inputs)
    assert chunked.logits is None  # the point: no (tokens, vocab) logits in training
    torch.testing.assert_close(chunked.loss, plain.loss, atol=1e-5, rtol=0)
    assert chunked_grads.keys() == plain_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(chunked_grads[name], grad, atol=1e-5, rtol=1e-5, msg=name)
    # num_items_in_batch (gradient accumulation) divides the same sum.
    with torch.no_grad():
        a = model(**inputs, num_items_in_batch=torch.tensor(40)).loss
        model.config.loss_chunk_size = None
        b = model(**inputs, num_items_in_batch=torch.tensor(40)).loss
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_chunked_loss_leaves_eval_logits_and_generate_unchanged():
    from model_tester import source_batch, target_ids

    torch.manual_seed(0)
    model = ForgeForConditionalGeneration(tiny_config()).eval()
    inputs = {**source_batch(2, 8), "labels": target_ids(2, 5)}
    plain = model(**inputs)
    plain_tokens = model.generate(**source_batch(2, 8), max_new_tokens=6, do_sample=False)
    model.config.loss_chunk_size = 3
    chunked = model(**inputs)
    torch.testing.assert_close(chunked.logits, plain.logits, atol=0, rtol=0)
    torch.testing.assert_close(chunked.loss, plain.loss, atol=0, rtol=0)
    assert torch.equal(model.generate(**source_batch(2, 8), max_new_tokens=6, do_sample=False), plain_tokens)


@pytest.mark.parametrize("chunk", [None, 7])
def test_label_smoothing_in_the_loss_equals_transformers_label_smoother(chunk):
    """``smoothing=`` in Forge's loss (plain and chunked) gives the loss and gradients of transformers'
    ``LabelSmoother`` on the returned logits, which is what the Trainer does with ``--label_smoothing_factor``."""
    from model_tester import source_batch, target_ids
    from transformers.trainer_pt_utils import LabelSmoother

    torch.manual_seed(0)
    model = ForgeForConditionalGeneration(tiny_config()).train()
    labels = target_ids(3, 9)
    labels[1, 6:] = -100
    inputs = source_batch(3, 10)
    decoder_input_ids = model.prepare_decoder_input_ids_from_labels(labels)
    model.zero_grad()
    reference = LabelSmoother(epsilon=0.1)(model(**inputs, decoder_input_ids=decoder_input_ids), labels)
    reference.backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.config.loss_chunk_size = chunk
    out, got = _loss_and_grads(model, {**inputs, "labels": labels, "smoothing": 0.1})
    torch.testing.assert_close(out.loss, reference, atol=1e-5, rtol=0)
    assert got.keys() == want.keys()
    for name, grad in want.items():
        torch.testing.assert_close(got[name], grad, atol=1e-5, rtol=1e-4, msg=name)
    plain, _ = _loss_and_grads(model, {**inputs, "labels": labels})
    assert plain.loss < out.loss  # smoothing is applied (it adds the mean over the vocabulary of -log p)


def test_the_trainer_sees_only_labels_as_label_columns():
    """transformers' Trainer takes every forward argument whose name contains "label" for a label column and skips
    the evaluation loss of batches without all of them; the smoothing argument must not be one."""
    from transformers.utils import find_labels

    from modeling import ForgeForQuestionAnswering, ForgeForSequenceClassification, ForgeForTokenClassification

    assert find_labels(ForgeForConditionalGeneration) == ["labels"]
    assert find_labels(ForgeForSequenceClassification) == ["labels"]
    assert find_labels(ForgeForTokenClassification) == ["labels"]
    assert find_labels(ForgeForQuestionAnswering) == ["start_positions", "end_positions"]


def test_seq2seq_trainer_hands_label_smoothing_to_forge_and_keeps_the_smoother_for_bart(tmp_path):
    """With ``--label_smoothing_factor`` the recipes' Seq2Seq Trainer lets Forge compute the smoothed loss (the
    Trainer's ``LabelSmoother`` is not called) with the same value; a model without the argument (BART) keeps the
    Trainer's path."""
    from unittest import mock

    from model_tester import source_batch, target_ids
    from transformers import BartConfig, BartForConditionalGeneration, Seq2SeqTrainingArguments
    from transformers.trainer_pt_utils import LabelSmoother

    from recipes.core.trainers import ForgeSeq2SeqTrainer

    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path), label_smoothing_factor=0.1, report_to="none")
    labels = target_ids(3, 9)
    labels[1, 6:] = -100
    torch.manual_seed(0)
    forge = ForgeForConditionalGeneration(tiny_config()).train()
    bart = BartForConditionalGeneration(BartConfig(
        vocab_size=99, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1, dropout=0.0,
    )).train()
    for model, smoother_calls in ((forge, 0), (bart, 1)):
        trainer = ForgeSeq2SeqTrainer(model=model, args=args)
        # as DataCollatorForSeq2Seq builds a batch: labels and the decoder inputs shifted from them
        inputs = {**source_batch(3, 10), "decoder_input_ids": model.prepare_decoder_input_ids_from_labels(labels)}
        with torch.no_grad():
            want = LabelSmoother(epsilon=0.1)(model(**inputs), labels)
        with mock.patch.object(LabelSmoother, "__call__", autospec=True, side_effect=LabelSmoother.__call__) as spy:
            with torch.no_grad():
                loss = trainer.compute_loss(model, {**inputs, "labels": labels})
        assert spy.call_count == smoother_calls, type(model).__name__
        assert trainer.label_smoother is not None  # restored for evaluation and the next step
        torch.testing.assert_close(loss, want, atol=1e-5, rtol=0)


def test_loss_chunk_size_must_be_positive():
    with pytest.raises(ValueError, match="loss_chunk_size"):
        tiny_config(loss_chunk_size=0)


# --------------------------------------------------------------------------------------------------------------
# Decoding: the cross-attention mask is built once per generation
# --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_reused_cross_mask_gives_the_same_tokens_as_rebuilding_it(attn, num_beams, monkeypatch):
    """Padded sources (so the mask is not None): tokens with the mask kept on the cache equal tokens with the mask
    rebuilt every step, greedy and beam."""
    from model_tester import source_batch

    from modeling import modeling_forge

    torch.manual_seed(0)
    model = ForgeForConditionalGeneration(tiny_config(attn_implementation=attn)).eval()
    inputs = source_batch(3, 9, padded=True)
    kwargs = dict(max_new_tokens=8, num_beams=num_beams, do_sample=False, min_new_tokens=8)
    built = []
    real = modeling_forge.create_bidirectional_mask

    def counting(**kw):
        built.append(kw["inputs_embeds"].shape[1])
        return real(**kw)

    monkeypatch.setattr(modeling_forge, "create_bidirectional_mask", counting)
    fast = model.generate(**inputs, **kwargs)
    # Encoder mask + the first decoder step (prefill) + one for all 1-token steps: not one per step.
    assert len(built) <= 3, built
    monkeypatch.setattr(modeling_forge.ForgeDecoder, "_cross_mask", lambda self, h, m, e, c: real(
        config=self.config, inputs_embeds=h, attention_mask=m, encoder_hidden_states=e))
    assert torch.equal(model.generate(**inputs, **kwargs), fast)
