"""Model FLOPs utilisation (MFU): model FLOPs per second over the accelerator's dense bf16 peak.

One FLOP count serves the benchmark (bench/bench_model.py) and the pretraining recipe's log line, so the two never
disagree: :func:`train_flops` counts 2 FLOPs per multiply-add of every linear layer, the attention scores and values
(causal self-attention at half) and the lm_head, times 3 for forward + backward. Embedding lookups, norms and
softmax are not counted (the convention of PaLM's MFU definition: model FLOPs, not hardware FLOPs, so activation
recomputation under gradient checkpointing does not raise the figure).
"""

from __future__ import annotations

import time
from typing import Optional

from transformers import TrainerCallback

__all__ = [
    "PEAK_BF16_TFLOPS", "mixing_flops", "train_flops", "peak_flops", "mfu", "pretraining_flops_per_sample",
    "ThroughputCallback",
]

# Dense (no structured sparsity) bf16 tensor-core peaks in TFLOP/s, from NVIDIA's data sheets, which quote the
# sparse figure with an asterisk: the dense one is half of it. More specific names come first (matched in order,
# as a substring of torch.cuda.get_device_name()).
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("GB200", 2500.0),  # GB200 NVL72 data sheet: 5 PFLOPS sparse per GPU
    ("B200", 2250.0),  # DGX B200 data sheet: 72 PFLOPS dense FP8 / 8 GPUs -> 2.25 PFLOPS dense bf16 per GPU
    ("H200 NVL", 835.0),  # H200 data sheet (NVL column): 1,671 TFLOPS sparse
    ("H200", 989.0),  # H200 data sheet (SXM): 1,979 TFLOPS sparse
    ("H100 NVL", 835.0),  # H100 data sheet (NVL): 1,671 TFLOPS sparse
    ("H100 PCIe", 756.0),  # H100 data sheet (PCIe): 1,513 TFLOPS sparse
    ("H100", 989.0),  # H100 data sheet (SXM, device name "NVIDIA H100 80GB HBM3"): 1,979 TFLOPS sparse
    ("GH200", 989.0),  # GH200 data sheet: the H100 SXM tensor cores
    ("A100", 312.0),  # A100 data sheet (SXM and PCIe): 312 TFLOPS dense bf16
    ("L40S", 362.0),  # L40S data sheet: 733 TFLOPS sparse
    ("L4", 121.0),  # L4 data sheet: 242 TFLOPS sparse
    ("A10", 125.0),  # A10 data sheet: 125 TFLOPS dense bf16 (A10G is a different, slower AWS part: not listed)
)


def mixing_flops(config, kind: str, batch: int, length: int, causal: bool) -> float:
    """Forward FLOPs of one token-mixing sublayer over ``batch`` x ``length`` tokens (2 per multiply-add)."""
    d, tokens = config.d_model, batch * length
    if kind == "attention":  # q, k, v, out projections + scores and weighted values (causal: half the square)
        return 2 * tokens * 4 * d * d + (2 if causal else 4) * batch * length * length * d
    if kind == "conv":  # GLU in-projection (d -> 2d), depthwise kernel, out-projection
        return 2 * tokens * (2 * d * d + d * d) + 2 * tokens * d * config.conv_kernel_size
    gates = 4 if config.recurrent_cell == "lstm" else 3
    directions, hidden = (1, d) if causal else (2, d // 2)
    return directions * 2 * tokens * gates * (d * hidden + hidden * hidden) + 2 * tokens * d * d  # + out-projection


def train_flops(config, batch: int, src: int, tgt: int, attention_only: bool = False) -> float:
    """Model FLOPs of one training step (forward + backward = 3 x forward) of an encoder-decoder of ``config``'s
    shape on ``batch`` rows of ``src`` source and ``tgt`` target tokens; one formula for Forge and BART (a config
    without ``layer_mixers`` is all attention). ``attention_only`` counts every token mixer as attention (BART's
    layers whatever Forge's mixers are)."""
    d, h_enc, h_dec = config.d_model, config.encoder_ffn_dim, config.decoder_ffn_dim
    enc_tokens, dec_tokens = batch * src, batch * tgt
    attention_only = attention_only or not hasattr(config, "layer_mixers")
    mixers = {stack: ["attention"] * getattr(config, f"{stack}_layers") if attention_only
              else config.layer_mixers(stack) for stack in ("encoder", "decoder")}
    encoder = sum(mixing_flops(config, kind, batch, src, causal=False) for kind in mixers["encoder"])
    encoder += config.encoder_layers * 2 * enc_tokens * 2 * d * h_enc  # feed-forward
    decoder = sum(mixing_flops(config, kind, batch, tgt, causal=True) for kind in mixers["decoder"])
    decoder += config.decoder_layers * (
        2 * dec_tokens * (2 * d * d + 2 * d * h_dec)  # cross q/out, feed-forward
        + 2 * enc_tokens * 2 * d * d  # cross-attention k, v of the encoder output
        + 4 * batch * tgt * src * d  # cross-attention scores + values
    )
    lm_head = 2 * dec_tokens * d * config.vocab_size
    return 3.0 * (encoder + decoder + lm_head)


def peak_flops(device_name: Optional[str]) -> Optional[float]:
    """Dense bf16 peak FLOP/s of the GPU named ``device_name`` (``torch.cuda.get_device_name()``), or None when
    unknown (a CPU, or a GPU not in :data:`PEAK_BF16_TFLOPS`): MFU is then not reported rather than guessed."""
    if not device_name:
        return None
    for key, tflops in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return tflops * 1e12
    return None


def mfu(flops_per_sample: float, samples_per_second: float, device_name: Optional[str]) -> Optional[float]:
    """Fraction (0..1) of the device's dense bf16 peak that ``flops_per_sample x samples_per_second`` reaches, or
    None when the peak is unknown."""
    peak = peak_flops(device_name)
    if peak is None or samples_per_second <= 0:
        return None
    return flops_per_sample * samples_per_second / peak


def pretraining_flops_per_sample(config, data_args) -> float:
    """Model FLOPs of training on one span-corruption block (its source and target lengths after corruption)."""
    from .pretraining import corrupted_lengths

    src, tgt = corrupted_lengths(data_args.block_size, data_args.noise_density, data_args.mean_noise_span_length)
    return train_flops(config, 1, src, tgt)


class ThroughputCallback(TrainerCallback):
    """Throughput of the steps since the previous training log, added to that log: ``samples_per_second`` and
    ``corpus_tokens_per_second`` (per process) and, on a GPU of known peak, ``mfu`` (per device, 0..1).

    The Trainer's own ``train_samples_per_second`` is one average over the whole run, start-up, compilation and
    first-step allocations included; these per-interval figures show the steady state as it is reached. The
    interval ends where the Trainer has just read the loss back from the device (a host-device sync), so queued
    kernels are counted in the interval that launched them. ``steady`` summarises the run from its first training
    log to its last (the warm-up interval left out). ``ForgeTrainer.log`` asks for the values
    (:meth:`training_log_values`) before the log is recorded, so they reach ``log_history`` and the console alike.
    """

    def __init__(self, flops_per_sample: float, tokens_per_sample: int, device_name: Optional[str] = None) -> None:
        self.flops_per_sample = flops_per_sample
        self.tokens_per_sample = tokens_per_sample
        self.device_name = device_name
        self._mark: Optional[tuple[float, int]] = None
        self._first: Optional[tuple[float, int]] = None
        self._last: Optional[tuple[float, int]] = None

    def device_mfu(self, samples_per_second: float, devices: int = 1) -> Optional[float]:
        """MFU of ``samples_per_second`` spread over ``devices`` GPUs like this one; None off a GPU of known peak."""
        return mfu(self.flops_per_sample, samples_per_second / max(1, devices), self.device_name)

    def _rates(self, args, start: tuple[float, int], end: tuple[float, int]) -> dict[str, float]:
        seconds, steps = end[0] - start[0], end[1] - start[1]
        if seconds <= 0 or steps <= 0:
            return {}
        # one optimizer step of this process: train_batch_size (per device x local GPUs) x accumulation
        per_process = steps * args.train_batch_size * args.gradient_accumulation_steps / seconds
        values = {
            "samples_per_second": round(per_process, 3),
            "corpus_tokens_per_second": round(per_process * self.tokens_per_sample, 1),
        }
        value = self.device_mfu(per_process, args.n_gpu)
        if value is not None:
            values["mfu"] = round(value, 4)
        return values

    def on_train_begin(self, args, state, control, **kwargs):
        self._mark = (time.perf_counter(), state.global_step)
        self._first = self._last = None

    def training_log_values(self, args, state) -> dict[str, float]:
        """The interval's figures (and the mark moved to now); {} before training began or when no step ran."""
        if self._mark is None:
            return {}
        now = (time.perf_counter(), state.global_step)
        values = self._rates(args, self._mark, now)
        if values:
            self._mark = now
            if self._first is None:
                self._first = now
            self._last = now
        return values

    def steady(self, args) -> dict[str, float]:
        """Rates from the first training log to the last (``{}`` with fewer than two logs)."""
        if self._first is None or self._last is None:
            return {}
        return self._rates(args, self._first, self._last)
