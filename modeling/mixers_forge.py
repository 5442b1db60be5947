"""Convolutional and recurrent token mixers: what a Forge layer can use instead of self-attention.

``config.encoder_mixer`` / ``config.decoder_mixer`` pick, per layer, the sublayer that mixes information across
positions (see ``ForgeConfig.layer_mixers``). Attention lives in ``modeling_forge.py``; this file holds the two
alternatives and what decoding with a cache needs for them. Each sits in the same normed residual slot as
self-attention: ``x + dropout(mixer(norm(x)))`` pre-norm, ``norm(x + dropout(mixer(x)))`` post-norm.

* ``ForgeLightweightConv`` (``"conv"``): the lightweight convolution of Wu et al. 2019, "Pay Less Attention with
  Lightweight and Dynamic Convolutions" (ICLR): a GLU input projection, a depthwise 1-D convolution whose kernel is
  softmax-normalised over its width and shared by all channels of a head, and an output projection. Cost and memory
  are linear in the sequence length, and the receptive field is ``conv_kernel_size`` tokens per layer. Centred
  (non-causal) in the encoder, causal in the decoder.
* ``ForgeRecurrent`` (``"recurrent"``): ``torch.nn.GRU`` or ``torch.nn.LSTM`` followed by an output projection;
  bidirectional in the encoder (``d_model / 2`` per direction), left to right in the decoder. Unbounded receptive
  field, but sequential in time, so it parallelises over the batch only.

Padding never changes what real tokens see: the convolution zeroes padded inputs, which is exactly what lies
beyond the ends of an unpadded sequence, and the recurrent layer runs on the real tokens only (packed sequences in the
decoder; in the encoder each direction runs unpacked over rows whose padding comes last, which is faster).

Decoding with a cache: a conv or recurrent decoder layer has no keys and values. Its slot in the self-attention
cache holds a ``ForgeMixerCacheLayer`` instead: the last ``conv_kernel_size - 1`` convolution inputs, or the
recurrent hidden state, plus the number of tokens seen (the decoder reads positions from it). Beam search reorders
it with the rest of the cache (``reorder_cache``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import initialization as init
from transformers.cache_utils import Cache, CacheLayerMixin, EncoderDecoderCache

from .configuration_forge import ForgeConfig


# ---------------------------------------------------------------------------------------------------------------
# Cache slot of a conv / recurrent decoder layer
# ---------------------------------------------------------------------------------------------------------------


class ForgeMixerCacheLayer(CacheLayerMixin):
    """The state a conv or recurrent decoder layer carries from one decoding step to the next.

    transformers 5 has ``LinearAttentionLayer`` for conv/recurrent states (Mamba-style models), but it does not
    count tokens, which Forge's decoder needs for its positions (an all-conv decoder has no attention layer to count
    them), and it has no ``batch_select_indices`` / ``batch_repeat_interleave``. This slot is a regular
    ``CacheLayerMixin``, so ``Cache.get_seq_length`` and the mask builders read it like an attention layer.
    """

    is_sliding = False
    is_croppable = False  # a recurrent state cannot be rolled back (assisted decoding needs that)
    supports_early_init = False  # nothing to preallocate: the state has no time axis

    def __init__(self) -> None:
        super().__init__()
        self.states: dict[str, torch.Tensor] = {}
        self.seen_tokens = 0
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        pass

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        raise TypeError("This cache slot belongs to a conv/recurrent decoder layer; it stores no keys and values.")

    def advance(self, num_tokens: int) -> None:
        """Record that the layer has consumed ``num_tokens`` more tokens (called once per forward)."""
        self.seen_tokens += num_tokens

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.seen_tokens + query_length, 0

    def get_seq_length(self) -> int:
        return self.seen_tokens

    def get_max_length(self) -> int:
        return -1

    def reset(self) -> None:
        self.states.clear()
        self.seen_tokens = 0

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.states = {k: v.index_select(0, beam_idx.to(v.device)) for k, v in self.states.items()}

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.states = {k: v[indices] for k, v in self.states.items()}

    def batch_repeat_interleave(self, repeats: int) -> None:
        self.states = {k: v.repeat_interleave(repeats, dim=0) for k, v in self.states.items()}

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError(
            "A conv/recurrent decoder layer keeps no per-token history, so its cache cannot be cropped "
            "(assisted / speculative decoding); generate without an assistant model."
        )

    def offload(self) -> None:
        self.states = {k: v.to("cpu", non_blocking=True) for k, v in self.states.items()}

    def prefetch(self) -> None:
        device = getattr(self, "device", None)
        if device is not None:
            self.states = {k: v.to(device, non_blocking=True) for k, v in self.states.items()}


def prepare_mixer_cache(cache: Cache, layer_indices: list[int]) -> None:
    """Give every conv/recurrent decoder layer (``layer_indices``) a ``ForgeMixerCacheLayer`` slot in ``cache``.

    generate() and users build plain caches (``DynamicCache``, ``StaticCache``) with an attention layer per slot;
    the decoder swaps the slots of its conv/recurrent layers before the first step, so any cache works.
    """
    for idx in layer_indices:
        if cache.layer_class_to_replicate is not None:  # a DynamicCache built without a config grows lazily
            while len(cache.layers) <= idx:
                cache.layers.append(cache.layer_class_to_replicate())
        if idx >= len(cache.layers):
            raise ValueError(
                f"The cache has {len(cache.layers)} layers but decoder layer {idx} needs a slot; build it with "
                "`DynamicCache(config=model.config)` or let generate() create it."
            )
        layer = cache.layers[idx]
        if isinstance(layer, ForgeMixerCacheLayer):
            continue
        if getattr(layer, "keys", None) is not None and layer.keys.numel() > 0:
            raise ValueError(
                f"Cache slot {idx} holds attention keys/values, but decoder layer {idx} is a conv/recurrent layer: "
                "the cache comes from a model with another `decoder_mixer`. Start from a fresh cache."
            )
        cache.layers[idx] = ForgeMixerCacheLayer()


def cache_slot(cache: EncoderDecoderCache | None, layer_idx: int) -> ForgeMixerCacheLayer | None:
    """The decoder layer's state slot, or None without a cache."""
    if cache is None:
        return None
    return cache.self_attention_cache.layers[layer_idx]


def mixer_padding_mask(attention_mask: torch.Tensor | None, length: int) -> torch.Tensor | None:
    """The 2-D padding mask of the current ``length`` tokens, as booleans (True = real token); None when there is
    no padding, so the mixers take their fast path. Computed once per stack, not once per layer."""
    if attention_mask is None or attention_mask.ndim != 2:
        return None
    mask = attention_mask[:, -length:].bool()
    if torch.compiler.is_compiling():
        # Under torch.compile the all-ones test is a graph break (and a host sync); an all-True mask gives the same
        # result as None, only through the masked path.
        return mask
    return None if bool(mask.all()) else mask


# ---------------------------------------------------------------------------------------------------------------
# Lightweight convolution
# ---------------------------------------------------------------------------------------------------------------


class ForgeLightweightConv(nn.Module):
    """GLU projection -> depthwise conv (softmax-normalised kernel shared within each head) -> output projection.

    ``weight`` holds one kernel of ``conv_kernel_size`` taps per head (``num_heads`` = the stack's attention heads),
    so a layer has ``num_heads * conv_kernel_size`` convolution parameters whatever ``d_model`` is. The softmax makes
    each output a weighted average of its window; ``attention_dropout`` drops kernel taps during training
    (DropConnect, the analogue of dropping attention weights).
    """

    def __init__(self, config: ForgeConfig, num_heads: int, causal: bool, layer_idx: int | None = None):
        super().__init__()
        self.d_model = config.d_model
        self.num_heads = num_heads
        self.kernel_size = config.conv_kernel_size
        self.causal = causal
        self.layer_idx = layer_idx
        self.weight_dropout = config.attention_dropout
        self.in_proj = nn.Linear(config.d_model, 2 * config.d_model)  # GLU: value and gate in one matmul
        self.weight = nn.Parameter(torch.empty(num_heads, self.kernel_size))
        self.out_proj = nn.Linear(config.d_model, config.d_model)

    def _kernel(self) -> torch.Tensor:
        """(d_model, 1, kernel_size): each head's normalised kernel, repeated for the channels of that head."""
        kernel = F.softmax(self.weight, dim=-1)
        kernel = F.dropout(kernel, p=self.weight_dropout, training=self.training)
        return kernel.repeat_interleave(self.d_model // self.num_heads, dim=0).unsqueeze(1)

    def forward(
        self,
        hidden_states: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        cache: EncoderDecoderCache | None = None,
    ) -> torch.Tensor:
        batch, length, _ = hidden_states.shape
        values = F.glu(self.in_proj(hidden_states), dim=-1)  # (batch, time, d_model)
        if padding_mask is not None:
            # A zeroed pad is what the convolution sees past the ends of an unpadded sequence: pads change nothing.
            values = values * padding_mask.unsqueeze(-1).to(values.dtype)
        values = values.transpose(1, 2)  # (batch, d_model, time), the layout of conv1d
        kernel = self._kernel().to(values.dtype)
        past = self.kernel_size - 1
        if not self.causal:
            out = F.conv1d(values, kernel, padding=past // 2, groups=self.d_model)
        else:
            slot = cache_slot(cache, self.layer_idx)
            window = slot.states.get("window") if slot is not None else None
            if window is None:  # nothing before the first token: zeros, as a left-padded convolution sees
                window = values.new_zeros(batch, self.d_model, past)
            values = torch.cat([window, values], dim=-1)  # (batch, d_model, past + time)
            if slot is not None:
                slot.states["window"] = values[:, :, values.shape[-1] - past :]
                slot.advance(length)
            out = F.conv1d(values, kernel, groups=self.d_model)  # (batch, d_model, time)
        return self.out_proj(out.transpose(1, 2))


# ---------------------------------------------------------------------------------------------------------------
# Recurrent layer
# ---------------------------------------------------------------------------------------------------------------


class ForgeRecurrent(nn.Module):
    """A one-layer GRU or LSTM over the sequence, then an output projection back to ``d_model``.

    Bidirectional in the encoder (``d_model / 2`` per direction, concatenated), left to right in the decoder
    (``d_model``), whose cache slot carries the hidden state (and the LSTM's cell state) between steps.
    """

    def __init__(self, config: ForgeConfig, bidirectional: bool, layer_idx: int | None = None):
        super().__init__()
        self.layer_idx = layer_idx
        self.is_lstm = config.recurrent_cell == "lstm"
        cell = nn.LSTM if self.is_lstm else nn.GRU
        hidden = config.d_model // 2 if bidirectional else config.d_model
        self.rnn = cell(config.d_model, hidden, batch_first=True, bidirectional=bidirectional)
        self.out_proj = nn.Linear(config.d_model, config.d_model)

    def forward(
        self,
        hidden_states: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        cache: EncoderDecoderCache | None = None,
    ) -> torch.Tensor:
        slot = cache_slot(cache, self.layer_idx)
        state = None
        # The slot keeps states batch first, (batch, 1, hidden), as every cache tensor is (beam search reorders
        # dimension 0); torch's RNNs want (1, batch, hidden).
        if slot is not None and "h" in slot.states:
            state = tuple(slot.states[k].transpose(0, 1).contiguous() for k in self._state_names)
            state = state if self.is_lstm else state[0]
        if slot is None and self.rnn.bidirectional and padding_mask is not None:
            # The encoder: no state to carry, so each direction runs unpacked (see run_directions_unpacked).
            return self.out_proj(run_directions_unpacked(self.rnn, hidden_states, padding_mask))
        out, state = run_skipping_padding(self.rnn, hidden_states, padding_mask, state)
        if slot is not None:
            for name, tensor in zip(self._state_names, state if self.is_lstm else (state,)):
                slot.states[name] = tensor.transpose(0, 1)
            slot.advance(hidden_states.shape[1])
        return self.out_proj(out)

    @property
    def _state_names(self) -> tuple[str, ...]:
        return ("h", "c") if self.is_lstm else ("h",)


RecurrentState = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def run_skipping_padding(
    rnn: nn.RNNBase, inputs: torch.Tensor, padding_mask: torch.Tensor | None, state: RecurrentState | None
) -> tuple[torch.Tensor, RecurrentState]:
    """Run ``rnn`` over the real tokens of each row only; pad positions get zeros and do not touch the state.

    The real tokens of each row are moved to the front (keeping their order, wherever the padding was: right,
    left or both), run as a packed sequence, and scattered back. Returns the outputs ``(batch, time, features)``
    and the final state after each row's last real token (the state passed in, for a row with none).
    """
    if padding_mask is None:
        return rnn(inputs, state)
    batch, length, _ = inputs.shape
    lengths = padding_mask.sum(dim=1)  # (batch,)
    gathered, order = real_tokens_first(inputs, padding_mask)
    # pack_padded_sequence refuses empty rows: give them one (padding) step and discard its effect below.
    packed = pack_padded_sequence(gathered, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
    packed_out, new_state = rnn(packed, state)
    out, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=length)
    out = back_to_positions(out, order, padding_mask)
    empty = lengths == 0
    if bool(empty.any()):
        states = new_state if isinstance(new_state, tuple) else (new_state,)
        before = state if isinstance(state, tuple) else (state,) if state is not None else (None,) * len(states)
        kept = tuple(
            torch.where(empty.view(1, -1, 1), old if old is not None else torch.zeros_like(new), new)
            for new, old in zip(states, before)
        )
        new_state = kept if isinstance(new_state, tuple) else kept[0]
    return out, new_state


def run_directions_unpacked(rnn: nn.RNNBase, inputs: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
    """A one-layer bidirectional ``rnn`` over the real tokens of each row, without packing; the outputs only.

    The same outputs as ``run_skipping_padding`` (which packs), for the case that needs no final state (the
    encoder): each row's real tokens are moved to the front, so padding comes after them for the left-to-right
    direction; for the right-to-left direction each row's real tokens are also reversed in place, so its padding
    comes last too. Padding at the end of a row cannot reach the outputs at its real tokens, so each direction is
    one ordinary call on the padded batch. Hand-written because torch's packed sequences are slow on a CPU: one
    bidirectional LSTM layer (batch 32, 150-200 tokens, d_model 256), forward and backward, took 0.58 s packed and
    0.14 s this way (0.13 s with no padding at all; ``bench/results/explore/lstm_unpacked_directions.{py,log}``).
    """
    batch, length, _ = inputs.shape
    lengths = padding_mask.sum(dim=1, keepdim=True)  # (batch, 1)
    forward_in, order = real_tokens_first(inputs, padding_mask)
    steps = torch.arange(length, device=inputs.device)
    reverse = torch.where(steps < lengths, lengths - 1 - steps, steps)  # (batch, time); its own inverse
    backward_in = forward_in.gather(1, reverse.unsqueeze(-1).expand_as(forward_in))
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if rnn.bias else ("weight_ih", "weight_hh")
    outputs = []
    for suffix, direction_in in (("", forward_in), ("_reverse", backward_in)):
        weights = [getattr(rnn, f"{name}_l0{suffix}") for name in names]
        h0 = inputs.new_zeros(1, batch, rnn.hidden_size)
        if isinstance(rnn, nn.LSTM):
            out = torch.lstm(direction_in, (h0, h0), weights, rnn.bias, 1, 0.0, rnn.training, False, True)[0]
        else:
            out = torch.gru(direction_in, h0, weights, rnn.bias, 1, 0.0, rnn.training, False, True)[0]
        outputs.append(out)
    outputs[1] = outputs[1].gather(1, reverse.unsqueeze(-1).expand_as(outputs[1]))
    return back_to_positions(torch.cat(outputs, dim=-1), order, padding_mask)


def real_tokens_first(inputs: torch.Tensor, padding_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's real tokens moved to the front in their order (wherever its padding was), and that order."""
    order = torch.argsort((~padding_mask).to(torch.int8), dim=1, stable=True)  # stable sort on "is padding"
    return inputs.gather(1, order.unsqueeze(-1).expand_as(inputs)), order


def back_to_positions(out: torch.Tensor, order: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
    """The inverse of ``real_tokens_first`` for outputs, with zeros at padding."""
    out = torch.zeros_like(out).scatter(1, order.unsqueeze(-1).expand_as(out), out)
    return out * padding_mask.unsqueeze(-1).to(out.dtype)


# ---------------------------------------------------------------------------------------------------------------
# Building and initialising
# ---------------------------------------------------------------------------------------------------------------


def build_mixer(config: ForgeConfig, kind: str, num_heads: int, causal: bool, layer_idx: int) -> nn.Module:
    """The non-attention mixer ``kind`` (``"conv"`` or ``"recurrent"``) of one layer."""
    if kind == "conv":
        return ForgeLightweightConv(config, num_heads, causal=causal, layer_idx=layer_idx)
    if kind == "recurrent":
        return ForgeRecurrent(config, bidirectional=not causal, layer_idx=layer_idx)
    raise ValueError(f"Unknown token mixer {kind!r}; attention layers are built by modeling_forge.py.")


def init_mixer_weights(module: nn.Module, std: float) -> None:
    """Initialise what transformers' default ``_init_weights`` does not (its Linear init covers the projections).

    Conv kernels start near zero, so the softmax makes each an even average of its window that training sharpens;
    recurrent input weights are Xavier-uniform and hidden-to-hidden weights orthogonal (keeps the state's scale
    through time at the start), biases zero.
    """
    if isinstance(module, ForgeLightweightConv):
        init.normal_(module.weight, mean=0.0, std=std)
    elif isinstance(module, (nn.GRU, nn.LSTM)):
        for name, param in module.named_parameters():
            if name.startswith("weight_ih"):
                init.xavier_uniform_(param)
            elif name.startswith("weight_hh"):
                init.orthogonal_(param)
            else:
                init.zeros_(param)


__all__ = [
    "ForgeLightweightConv",
    "ForgeMixerCacheLayer",
    "ForgeRecurrent",
    "build_mixer",
    "init_mixer_weights",
    "mixer_padding_mask",
    "prepare_mixer_cache",
    "run_directions_unpacked",
    "run_skipping_padding",
]
