"""Forge: a from-scratch encoder-decoder Transformer for Hugging Face transformers 5.

The file reads top to bottom: positions -> attention function -> attention module -> feed-forward -> encoder layer
-> decoder layer -> ForgePreTrainedModel -> encoder -> decoder -> ForgeModel -> task heads. The optional conv and
recurrent token mixers that can replace self-attention (``encoder_mixer`` / ``decoder_mixer``) are in
``mixers_forge.py``.

Design notes (speed is part of the design, not an afterthought):
* Pre-norm layers; each stack ends with a final norm.
* Self-attention projects q, k, v with ONE fused matmul (``qkv_proj``); cross-attention projects k, v of the encoder
  output with one fused matmul (``kv_proj``), once per generation: later decoding steps read them from the
  ``EncoderDecoderCache``.
* Position tables (sinusoidal rows, rotary cos/sin) are precomputed buffers, so a decoding step only slices them.
* Masks come from ``transformers.masking_utils``: with sdpa and no padding they are ``None`` and the kernel runs with
  ``is_causal`` (decoder self-attention) or with no mask at all (encoder and cross-attention, which are never causal).
* The token embedding ``shared`` is one module, registered on the encoder and decoder too (``embed_tokens``, see
  ``_share``); the weights file stores it once, as ``shared.weight``, so the encoder heads load it from a seq2seq
  checkpoint.
* ``output_hidden_states`` / ``output_attentions`` are recorded by transformers' ``capture_outputs`` hooks, installed
  on first request: the default forward carries no recording code.
"""

import math
import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.masking_utils import create_bidirectional_mask, create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    QuestionAnsweringModelOutput,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, can_return_tuple, logging
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

try:  # the error type of a truncated or corrupt weights file
    from safetensors import SafetensorError
except ImportError:  # older safetensors
    from safetensors._safetensors_rust import SafetensorError

from .configuration_forge import ForgeConfig
from .generation_forge import compiled_decoding as _compiled_decoding
from .mixers_forge import build_mixer, init_mixer_weights, mixer_padding_mask, prepare_mixer_cache


logger = logging.get_logger(__name__)

# The output switches transformers passes to every forward (generate, pipelines, its tests). transformers' own
# decorators act on them: `capture_outputs` on the encoder and decoder records per-layer hidden states and attention
# weights, `can_return_tuple` on the models turns the output into a tuple for `return_dict=False`.
_OUTPUT_KWARGS = frozenset({"output_attentions", "output_hidden_states", "return_dict"})


def _check_kwargs(kwargs: dict, where: str) -> None:
    """Refuse arguments that would otherwise be swallowed silently (a misnamed cache gives wrong tokens)."""
    if "past_key_values" in kwargs:  # the models accept it (deprecated); a stack called directly does not
        raise TypeError(f"{where}: the KV cache argument is named `cache` in transformers 5, not `past_key_values`.")
    unknown = set(kwargs) - _OUTPUT_KWARGS
    if unknown:
        raise TypeError(f"{where} got unexpected keyword arguments: {sorted(unknown)}")


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Decoder inputs from labels: prepend ``decoder_start_token_id``, drop the last token, turn -100 into pad."""
    shifted = labels.new_empty(labels.shape)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill_(shifted == -100, pad_token_id)


# ---------------------------------------------------------------------------------------------------------------
# Positions
# ---------------------------------------------------------------------------------------------------------------


def sinusoidal_table(num_positions: int, dim: int) -> torch.Tensor:
    """The original Transformer's fixed encodings, ``(num_positions, dim)``: sines in the first half, cosines after."""
    inv_freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    angles = torch.arange(num_positions, dtype=torch.float32)[:, None] * inv_freq[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def position_end(start: int | torch.Tensor, length: int) -> int | None:
    """The number of table rows positions ``start .. start+length-1`` need, or None inside a compiled region.

    ``start`` is the cache's length: an int for a dynamic cache, a 0-d tensor for a static one (transformers keeps
    it on the device so that compiled decoding steps neither sync on it nor recompile as it grows). Reading that
    tensor would break the compiled graph, so a compiled step does not check: the decoder grows its tables to the
    static cache's whole length before the (uncompiled) prefill, see ``ForgeDecoder.forward``.
    """
    if isinstance(start, torch.Tensor):
        if torch.compiler.is_compiling():
            return None
        start = int(start)
    return start + length


def position_rows(table: torch.Tensor, start: int | torch.Tensor, length: int) -> torch.Tensor:
    """Rows ``start .. start+length-1`` of a position table; a tensor ``start`` indexes instead of slicing.

    Slicing by a tensor calls ``Tensor.item()``, a graph break under ``torch.compile``; BART builds position ids
    with ``arange + cache length`` for the same reason. An int ``start`` (training, dynamic cache) keeps the slice,
    which copies nothing.
    """
    if isinstance(start, torch.Tensor):
        return table.index_select(0, torch.arange(length, device=table.device) + start.to(table.device))
    return table[start : start + length]


def rotary_tables(num_positions: int, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE cos and sin, each ``(num_positions, head_dim)`` in the rotate-half layout."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.arange(num_positions, dtype=torch.float32)[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


class ForgeSinusoidalPositions(nn.Module):
    """Fixed sinusoidal positions, precomputed for ``max_position_embeddings`` and extended on demand."""

    def __init__(self, num_positions: int, dim: int):
        super().__init__()
        self.dim = dim
        # Not saved: it is a function of the config (rebuilt by `_init_weights` after loading). Built in the default
        # dtype, which from_pretrained(dtype=...) sets: a float32 table would turn fp16/bf16 activations into float32.
        table = sinusoidal_table(num_positions, dim).to(torch.get_default_dtype())
        self.register_buffer("table", table, persistent=False)

    def grow(self, end: int) -> None:
        """Cover positions ``0 .. end-1`` (doubling, so that a growing input regrows the table rarely)."""
        if end > self.table.shape[0]:
            grown = sinusoidal_table(max(end, 2 * self.table.shape[0]), self.dim)
            self.table = grown.to(device=self.table.device, dtype=self.table.dtype)

    def forward(self, start: int | torch.Tensor, length: int) -> torch.Tensor:
        """Rows ``start .. start+length-1``, ``(length, dim)``."""
        end = position_end(start, length)
        if end is not None:
            self.grow(end)
        return position_rows(self.table, start, length)


class ForgeLearnedPositions(nn.Embedding):
    """A learned table of ``max_position_embeddings`` rows; longer inputs are an error, not a silent wrap."""

    def grow(self, end: int) -> None:
        """Learned rows cannot grow; a longer input is refused in ``forward``."""

    def forward(self, start: int | torch.Tensor, length: int) -> torch.Tensor:
        end = position_end(start, length)
        if end is not None and end > self.num_embeddings:
            raise ValueError(
                f"Sequence of {end} positions exceeds max_position_embeddings={self.num_embeddings} of learned "
                "position embeddings. Truncate the inputs (e.g. tokenizer `max_length`), or use a config with "
                "position_embedding_type='sinusoidal' or 'rotary', which run past the trained length."
            )
        return position_rows(self.weight, start, length)


class ForgeRotaryPositions(nn.Module):
    """Rotary cos/sin tables for self-attention, precomputed and sliced per step."""

    def __init__(self, num_positions: int, head_dim: int, theta: float):
        super().__init__()
        self.head_dim = head_dim
        self.theta = theta
        cos, sin = rotary_tables(num_positions, head_dim, theta)  # in the default dtype, as the sinusoidal table
        self.register_buffer("cos", cos.to(torch.get_default_dtype()), persistent=False)
        self.register_buffer("sin", sin.to(torch.get_default_dtype()), persistent=False)

    def grow(self, end: int) -> None:
        """Cover positions ``0 .. end-1`` (doubling, as the sinusoidal table)."""
        if end > self.cos.shape[0]:
            cos, sin = rotary_tables(max(end, 2 * self.cos.shape[0]), self.head_dim, self.theta)
            self.cos = cos.to(device=self.cos.device, dtype=self.cos.dtype)
            self.sin = sin.to(device=self.sin.device, dtype=self.sin.dtype)

    def forward(self, start: int | torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin for positions ``start .. start+length-1``, each ``(length, head_dim)``."""
        end = position_end(start, length)
        if end is not None:
            self.grow(end)
        return position_rows(self.cos, start, length), position_rows(self.sin, start, length)


class ForgeScaledEmbedding(nn.Embedding):
    """The token embedding, times ``embed_scale`` (sqrt(d_model) with ``scale_embedding``), as BART's.

    Scaling inside the module makes ``get_input_embeddings()(input_ids)`` exactly what ``input_ids`` feed the stacks,
    so ``inputs_embeds`` built from it (prompt tuning, ``generate(inputs_embeds=...)``) give the same outputs.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, embed_scale: float = 1.0, padding_idx: int | None = None):
        super().__init__(num_embeddings, embedding_dim, padding_idx=padding_idx)
        self.embed_scale = embed_scale

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return super().forward(input_ids) * self.embed_scale

    @classmethod
    def for_config(cls, config: ForgeConfig) -> "ForgeScaledEmbedding":
        return cls(config.vocab_size, config.d_model, math.sqrt(config.d_model) if config.scale_embedding else 1.0)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (batch, heads, time, head_dim) by the position angles (rotate-half form)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


# ---------------------------------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------------------------------


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The readable reference: softmax(q k^T * scale + mask) v.

    q: (batch, heads, q_len, head_dim); k, v: (batch, heads, kv_len, head_dim). ``attention_mask`` is additive
    (0 keep, large negative drop), built by ``masking_utils`` for eager; it already holds the causal pattern.
    Returns the output as (batch, q_len, heads, head_dim), as every kernel of the attention interface does.
    """
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling  # (batch, heads, q_len, kv_len)
    if attention_mask is not None:
        scores = scores + attention_mask
    weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = F.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value)  # (batch, heads, q_len, head_dim)
    return output.transpose(1, 2), weights


class ForgeAttention(nn.Module):
    """Multi-head attention: fused q/k/v for self-attention, fused k/v (computed once, cached) for cross-attention."""

    def __init__(
        self,
        config: ForgeConfig,
        num_heads: int,
        is_causal: bool = False,
        is_cross_attention: bool = False,
        layer_idx: int | None = None,
    ):
        super().__init__()
        self.config = config
        self.num_heads = num_heads
        self.head_dim = config.d_model // num_heads
        self.scaling = self.head_dim**-0.5
        self.dropout = config.attention_dropout
        # Read by the sdpa / flash kernels: encoder and cross attention must never run causally.
        self.is_causal = is_causal
        self.is_cross_attention = is_cross_attention
        self.layer_idx = layer_idx
        d_model = config.d_model
        if is_cross_attention:
            self.q_proj = nn.Linear(d_model, d_model)
            self.kv_proj = nn.Linear(d_model, 2 * d_model)
        else:
            self.qkv_proj = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def _split_heads(self, x: torch.Tensor, parts: int) -> tuple[torch.Tensor, ...]:
        """(batch, time, parts * d_model) -> ``parts`` views of (batch, heads, time, head_dim), no copy."""
        batch, time, _ = x.shape
        # unbind(2) then transpose (not permute then unbind(0)): the backward's stack then lands directly in x's
        # contiguous (batch, time, parts, heads, head_dim) layout, saving one copy of the q/k/v gradient per layer.
        split = x.view(batch, time, parts, self.num_heads, self.head_dim).unbind(2)
        return tuple(part.transpose(1, 2) for part in split)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        key_value_states: torch.Tensor | None = None,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: EncoderDecoderCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, q_len, _ = hidden_states.shape
        if self.is_cross_attention:
            (query,) = self._split_heads(self.q_proj(hidden_states), 1)
            if cache is not None and cache.is_updated.get(self.layer_idx):
                # Encoder keys/values were projected at the first decoding step: reuse them.
                layer = cache.cross_attention_cache.layers[self.layer_idx]
                key, value = layer.keys, layer.values
            else:
                key, value = self._split_heads(self.kv_proj(key_value_states), 2)
                if cache is not None:
                    key, value = cache.cross_attention_cache.update(key, value, self.layer_idx)
                    cache.is_updated[self.layer_idx] = True
        else:
            query, key, value = self._split_heads(self.qkv_proj(hidden_states), 3)
            if position_embeddings is not None:
                cos, sin = position_embeddings
                query, key = apply_rotary(query, cos, sin), apply_rotary(key, cos, sin)
            if cache is not None:
                key, value = cache.self_attention_cache.update(key, value, self.layer_idx)

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        output, weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.dropout if self.training else 0.0,
            scaling=self.scaling,
        )  # output: (batch, q_len, heads, head_dim)
        output = self.out_proj(output.reshape(batch, q_len, -1))
        return output, weights


# ---------------------------------------------------------------------------------------------------------------
# Feed-forward and layers
# ---------------------------------------------------------------------------------------------------------------


class ForgeFeedForward(nn.Module):
    """``fc2(act(fc1(x)))``, or gated ``fc2(act(gate) * up)`` with gate and up from one fused ``fc1``."""

    def __init__(self, config: ForgeConfig, ffn_dim: int):
        super().__init__()
        self.gated = config.ffn_type == "gated"
        self.fc1 = nn.Linear(config.d_model, 2 * ffn_dim if self.gated else ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, config.d_model)
        self.act = ACT2FN[config.activation_function]
        self.activation_dropout = config.activation_dropout

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.fc1(hidden_states)
        if self.gated:
            gate, up = hidden_states.chunk(2, dim=-1)
            hidden_states = self.act(gate) * up
        else:
            hidden_states = self.act(hidden_states)
        hidden_states = F.dropout(hidden_states, p=self.activation_dropout, training=self.training)
        return self.fc2(hidden_states)


def make_norm(config: ForgeConfig) -> nn.Module:
    """LayerNorm or RMSNorm over ``d_model`` (torch's fused implementations)."""
    if config.norm_type == "rmsnorm":
        return nn.RMSNorm(config.d_model, eps=config.layer_norm_eps)
    return nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)


class _ResidualNorms:
    """Where each sublayer's norm sits (``config.norm_position``): before the sublayer or after the residual sum."""

    pre_norm: bool = True
    dropout: float = 0.0

    def sublayer_input(self, norm: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
        """Pre-norm: the sublayer reads norm(x). Post-norm: it reads x."""
        return norm(hidden_states) if self.pre_norm else hidden_states

    def add_residual(self, norm: nn.Module, hidden_states: torch.Tensor, sublayer_out: torch.Tensor) -> torch.Tensor:
        """x + dropout(f): pre-norm returns it as is, post-norm normalises it."""
        hidden_states = hidden_states + F.dropout(sublayer_out, p=self.dropout, training=self.training)
        return hidden_states if self.pre_norm else norm(hidden_states)


class ForgeEncoderLayer(_ResidualNorms, GradientCheckpointingLayer):
    """Pre-norm: x + SelfAttn(norm(x)), then x + FFN(norm(x)); post-norm: norm(x + SelfAttn(x)), norm(x + FFN(x)).

    With ``encoder_mixer`` "conv" or "recurrent" for this layer, ``mixer_norm`` + ``mixer`` take the place of
    ``self_attn_norm`` + ``self_attn`` (which then do not exist, so attention checkpoints keep their weight names).
    """

    def __init__(self, config: ForgeConfig, layer_idx: int):
        super().__init__()
        heads, kind = config.encoder_attention_heads, config.layer_mixers("encoder")[layer_idx]
        self.mixer: nn.Module | None = None
        if kind == "attention":
            self.self_attn_norm = make_norm(config)
            self.self_attn = ForgeAttention(config, heads, is_causal=False, layer_idx=layer_idx)
        else:
            self.mixer_norm = make_norm(config)
            self.mixer = build_mixer(config, kind, heads, causal=False, layer_idx=layer_idx)
        self.ffn_norm = make_norm(config)
        self.ffn = ForgeFeedForward(config, config.encoder_ffn_dim)
        self.dropout = config.dropout
        self.pre_norm = config.norm_position == "pre"

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.mixer is not None:  # conv / recurrent: reads the 2-D padding mask, not the attention mask
            mix_norm = self.mixer_norm
            attn_out = self.mixer(self.sublayer_input(mix_norm, hidden_states), padding_mask=padding_mask)
        else:
            mix_norm = self.self_attn_norm
            attn_out, _ = self.self_attn(
                self.sublayer_input(mix_norm, hidden_states),
                attention_mask=attention_mask,
                position_embeddings=position_embeddings,
            )
        hidden_states = self.add_residual(mix_norm, hidden_states, attn_out)
        ffn_out = self.ffn(self.sublayer_input(self.ffn_norm, hidden_states))
        return self.add_residual(self.ffn_norm, hidden_states, ffn_out)


class ForgeDecoderLayer(_ResidualNorms, GradientCheckpointingLayer):
    """Pre-norm: x + CausalSelfAttn(norm(x)), x + CrossAttn(norm(x), encoder), x + FFN(norm(x)); post-norm puts
    each norm after its residual sum instead.

    With ``decoder_mixer`` "conv" or "recurrent" for this layer, a causal ``mixer`` (with ``mixer_norm``) replaces
    the causal self-attention; cross-attention stays.
    """

    def __init__(self, config: ForgeConfig, layer_idx: int):
        super().__init__()
        heads = config.decoder_attention_heads
        kind = config.layer_mixers("decoder")[layer_idx]
        self.mixer: nn.Module | None = None
        if kind == "attention":
            self.self_attn_norm = make_norm(config)
            self.self_attn = ForgeAttention(config, heads, is_causal=True, layer_idx=layer_idx)
        else:
            self.mixer_norm = make_norm(config)
            self.mixer = build_mixer(config, kind, heads, causal=True, layer_idx=layer_idx)
        self.encoder_attn_norm = make_norm(config)
        self.encoder_attn = ForgeAttention(config, heads, is_cross_attention=True, layer_idx=layer_idx)
        self.ffn_norm = make_norm(config)
        self.ffn = ForgeFeedForward(config, config.decoder_ffn_dim)
        self.dropout = config.dropout
        self.pre_norm = config.norm_position == "pre"

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: EncoderDecoderCache | None = None,
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.mixer is not None:  # conv / recurrent: its state lives in this layer's slot of the cache
            mix_norm = self.mixer_norm
            attn_out = self.mixer(self.sublayer_input(mix_norm, hidden_states), padding_mask=padding_mask, cache=cache)
        else:
            mix_norm = self.self_attn_norm
            attn_out, _ = self.self_attn(
                self.sublayer_input(mix_norm, hidden_states),
                attention_mask=attention_mask,
                position_embeddings=position_embeddings,
                cache=cache,
            )
        hidden_states = self.add_residual(mix_norm, hidden_states, attn_out)
        cross_out, _ = self.encoder_attn(
            self.sublayer_input(self.encoder_attn_norm, hidden_states),
            attention_mask=encoder_attention_mask,
            key_value_states=encoder_hidden_states,
            cache=cache,
        )
        hidden_states = self.add_residual(self.encoder_attn_norm, hidden_states, cross_out)
        ffn_out = self.ffn(self.sublayer_input(self.ffn_norm, hidden_states))
        return self.add_residual(self.ffn_norm, hidden_states, ffn_out)


# ---------------------------------------------------------------------------------------------------------------
# Pretrained base class
# ---------------------------------------------------------------------------------------------------------------


class ForgePreTrainedModel(PreTrainedModel):
    """Weight init, attention-kernel support and loading rules shared by every Forge model."""

    config_class = ForgeConfig
    config: ForgeConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["ForgeEncoderLayer", "ForgeDecoderLayer"]
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_flash_attn = True

    def _init_weights(self, module: nn.Module) -> None:
        """Normal(0, init_std) for linear weights and learned positions, Normal(0, config.token_embedding_std()) for
        the token embedding, zero biases, unit norms; rebuild position tables."""
        super()._init_weights(module)
        if isinstance(module, nn.Embedding) and not isinstance(module, ForgeLearnedPositions):  # the token embedding
            init.normal_(module.weight, mean=0.0, std=self.config.token_embedding_std())
            if module.padding_idx is not None:  # a row that must stay zero (the lexical-match "no match" row)
                init.zeros_(module.weight[module.padding_idx])
        init_mixer_weights(module, self.config.init_std)  # conv kernels and GRU/LSTM weights, if any
        if isinstance(module, ForgeSinusoidalPositions):
            init.copy_(module.table, sinusoidal_table(module.table.shape[0], module.dim))
        elif isinstance(module, ForgeRotaryPositions):
            cos, sin = rotary_tables(module.cos.shape[0], module.head_dim, module.theta)
            init.copy_(module.cos, cos)
            init.copy_(module.sin, sin)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """transformers' loader, safetensors only (a ``pytorch_model.bin`` is a pickle, which can run code when
        loaded), with a broken weights file reported by name (safetensors' own message does not say which file
        it was reading)."""
        if kwargs.get("use_safetensors") is False:
            raise ValueError("Forge loads safetensors weights only; use_safetensors=False is not supported.")
        kwargs["use_safetensors"] = True
        subfolder = kwargs.get("subfolder")
        folder = os.path.join(str(pretrained_model_name_or_path), subfolder) if subfolder else str(pretrained_model_name_or_path)
        if os.path.isfile(os.path.join(folder, "pytorch_model.bin")) and not any(
            os.path.isfile(os.path.join(folder, name)) for name in ("model.safetensors", "model.safetensors.index.json")
        ):
            raise OSError(
                f"{folder} holds only pytorch_model.bin (a pickle, which can run code when loaded); Forge loads "
                "model.safetensors only. If the file is yours and you trust it, convert it once:\n"
                "    model = ForgeForConditionalGeneration(ForgeConfig.from_pretrained(FOLDER))  # your head's class\n"
                "    model.load_state_dict(torch.load(FOLDER + '/pytorch_model.bin', weights_only=True))\n"
                "    model.save_pretrained(FOLDER, safe_serialization=True)  # then delete pytorch_model.bin"
            )
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except SafetensorError as error:
            raise OSError(_describe_broken_weights(pretrained_model_name_or_path, kwargs.get("subfolder"), error)) from error

    def _loss(self, loss_sum: torch.Tensor, count: torch.Tensor | int, num_items_in_batch=None) -> torch.Tensor:
        """Mean over ``count`` items, or over the Trainer's ``num_items_in_batch`` (right under grad accumulation
        and DDP)."""
        denominator = num_items_in_batch if num_items_in_batch is not None else count
        if isinstance(denominator, torch.Tensor):
            denominator = denominator.to(loss_sum.device)
        return loss_sum / denominator


def _describe_broken_weights(name_or_path, subfolder: str | None, error: Exception) -> str:
    """Name the unreadable ``*.safetensors`` file(s) of a local folder (or the repository, for a Hub id)."""
    folder = os.path.join(str(name_or_path), subfolder or "")
    broken = []
    if os.path.isdir(folder):
        from safetensors import safe_open

        for file_name in sorted(os.listdir(folder)):
            if file_name.endswith(".safetensors"):
                path = os.path.join(folder, file_name)
                try:
                    with safe_open(path, framework="pt") as handle:
                        handle.keys()
                except Exception:  # noqa: BLE001 - any failure to read the header means this file is broken
                    broken.append(path)
    where = ", ".join(broken) if broken else f"the *.safetensors weights of {name_or_path}"
    return (
        f"Could not read {where}: the file is truncated or corrupt ({error}). "
        "Download or save the model again (an interrupted copy or download is the usual cause)."
    )


# ---------------------------------------------------------------------------------------------------------------
# Encoder and decoder stacks
# ---------------------------------------------------------------------------------------------------------------


class _ForgeStack(ForgePreTrainedModel):
    """What the encoder and decoder share: the token embedding, positions, final norm.

    A PreTrainedModel (as BART's encoder and decoder are) so that transformers' ``capture_outputs`` can record its
    per-layer hidden states and attention weights on request (``_can_record_outputs`` of the subclasses).
    """

    def __init__(self, config: ForgeConfig, embed_tokens: nn.Embedding, num_heads: int):
        super().__init__(config)
        self._share(embed_tokens)
        self.embed_positions: nn.Module | None = None
        self.rotary: ForgeRotaryPositions | None = None
        if config.position_embedding_type == "learned":
            self.embed_positions = ForgeLearnedPositions(config.max_position_embeddings, config.d_model)
        elif config.position_embedding_type == "sinusoidal":
            self.embed_positions = ForgeSinusoidalPositions(config.max_position_embeddings, config.d_model)
        else:
            self.rotary = ForgeRotaryPositions(
                config.max_position_embeddings, config.d_model // num_heads, config.rope_theta
            )
        # Pre-norm leaves the residual stream unnormalised, so each stack ends with a norm; post-norm's last layer
        # already ends with one, and its input sum is normalised instead (BART's `layernorm_embedding`).
        pre_norm = config.norm_position == "pre"
        self.final_norm = make_norm(config) if pre_norm else nn.Identity()
        self.embed_norm = None if pre_norm else make_norm(config)
        self.dropout = config.dropout

    def _share(self, embed_tokens: nn.Embedding) -> None:
        # The model's `shared` module itself, registered here too (so `named_modules(remove_duplicate=False)`,
        # `get_submodule("encoder.embed_tokens")`, hooks and parallel plans see it). One module object, not a copy
        # tied by name: the encoder and decoder share it whatever `tie_word_embeddings` says (that flag is about
        # lm_head), and the weights file keeps one tensor (`_keys_to_ignore_on_save`).
        self.embed_tokens = embed_tokens

    def _check_output_attentions(self, kwargs: dict) -> None:
        """Warn (once) that fused kernels return no attention weights, as transformers' sdpa/flash kernels do."""
        if (kwargs.get("output_attentions") or self.config.output_attentions) and (
            self.config._attn_implementation != "eager"
        ):
            logger.warning_once(
                f"output_attentions=True needs attn_implementation='eager': '{self.config._attn_implementation}' "
                "computes no attention weights, so the attentions come back empty. Load the model with "
                "attn_implementation='eager' (or call model.set_attn_implementation('eager'))."
            )

    def embed(
        self, input_ids: torch.LongTensor | None, inputs_embeds: torch.Tensor | None, start: int | torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """Token (+ absolute position) embeddings, and the rotary tables if any."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` and `inputs_embeds`.")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)  # scaled by the module (ForgeScaledEmbedding)
        length = inputs_embeds.shape[1]
        position_embeddings = None
        if self.embed_positions is not None:
            inputs_embeds = inputs_embeds + self.embed_positions(start, length)
        else:
            position_embeddings = self.rotary(start, length)
        if self.embed_norm is not None:
            inputs_embeds = self.embed_norm(inputs_embeds)
        return F.dropout(inputs_embeds, p=self.dropout, training=self.training), position_embeddings


class ForgeEncoder(_ForgeStack):
    """Bidirectional self-attention over the source."""

    # Recorded by `capture_outputs` only when asked (output_hidden_states / output_attentions): the hooks are
    # installed on first request, so the default forward runs no per-layer recording code.
    _can_record_outputs = {"hidden_states": ForgeEncoderLayer, "attentions": ForgeAttention}

    def __init__(self, config: ForgeConfig, embed_tokens: nn.Embedding):
        super().__init__(config, embed_tokens, config.encoder_attention_heads)
        self.layers = nn.ModuleList([ForgeEncoderLayer(config, i) for i in range(config.encoder_layers)])
        self.has_mixers = any(kind != "attention" for kind in config.layer_mixers("encoder"))
        self.post_init()

    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutput:
        # generate() hands the batch's remaining model kwargs to the encoder; under Seq2SeqTrainer's
        # predict_with_generate that includes `labels`, which the encoder has no use for.
        kwargs.pop("labels", None)
        kwargs.pop("copy_source_ids", None)  # the decoding steps' (copy_attention), handed over by generate() too
        _check_kwargs(kwargs, "ForgeEncoder.forward")
        self._check_output_attentions(kwargs)
        hidden_states, position_embeddings = self.embed(input_ids, inputs_embeds, start=0)
        # None when there is no padding under sdpa/flash: the kernel then needs no mask at all.
        mask = create_bidirectional_mask(config=self.config, inputs_embeds=hidden_states, attention_mask=attention_mask)
        mixer_kwargs = {}
        if self.has_mixers:  # conv / recurrent layers mask padding themselves, from the 2-D mask
            mixer_kwargs["padding_mask"] = mixer_padding_mask(attention_mask, hidden_states.shape[1])
        for layer in self.layers:
            hidden_states = layer(hidden_states, attention_mask=mask, position_embeddings=position_embeddings,
                                  **mixer_kwargs)
        return BaseModelOutput(last_hidden_state=self.final_norm(hidden_states))


class ForgeDecoder(_ForgeStack):
    """Causal self-attention over the target prefix plus cross-attention to the encoder output."""

    _can_record_outputs = {
        "hidden_states": ForgeDecoderLayer,
        "attentions": OutputRecorder(ForgeAttention, index=1, layer_name="self_attn"),
        "cross_attentions": OutputRecorder(ForgeAttention, index=1, layer_name="encoder_attn"),
    }

    def __init__(self, config: ForgeConfig, embed_tokens: nn.Embedding):
        super().__init__(config, embed_tokens, config.decoder_attention_heads)
        self.layers = nn.ModuleList([ForgeDecoderLayer(config, i) for i in range(config.decoder_layers)])
        self.mixer_layers = [i for i, kind in enumerate(config.layer_mixers("decoder")) if kind != "attention"]
        self.post_init()

    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        _check_kwargs(kwargs, "ForgeDecoder.forward")
        self._check_output_attentions(kwargs)
        if encoder_hidden_states is None:
            raise ValueError("ForgeDecoder needs `encoder_hidden_states` (the encoder output).")
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and cache is None:
            cache = EncoderDecoderCache(DynamicCache(config=self.config), DynamicCache(config=self.config))
        elif not use_cache:
            cache = None
        if cache is not None and not isinstance(cache, EncoderDecoderCache):
            raise TypeError(
                f"Forge's decoder needs an EncoderDecoderCache (self- and cross-attention), got {type(cache).__name__}."
            )
        if cache is not None and self.mixer_layers:
            prepare_mixer_cache(cache.self_attention_cache, self.mixer_layers)  # conv/recurrent state slots
        past_length = cache.get_seq_length() if cache is not None else 0
        if isinstance(past_length, torch.Tensor) and not torch.compiler.is_compiling():
            # A static cache (its length is a tensor): grow the position table to the cache's whole length now,
            # in the uncompiled prefill, so that compiled decoding steps never need to (`position_end`).
            self.grow_positions(cache.self_attention_cache.get_max_length())
        hidden_states, position_embeddings = self.embed(input_ids, inputs_embeds, start=past_length)

        # sdpa: None when there is no padding (then the kernel's is_causal applies); eager: the full additive mask.
        self_mask = create_causal_mask(
            config=self.config,
            inputs_embeds=hidden_states,
            attention_mask=attention_mask,
            cache=cache.self_attention_cache if cache is not None else None,
        )
        cross_mask = self._cross_mask(hidden_states, encoder_attention_mask, encoder_hidden_states, cache)
        mixer_kwargs = {}
        if self.mixer_layers:
            mixer_kwargs["padding_mask"] = mixer_padding_mask(attention_mask, hidden_states.shape[1])
        for layer in self.layers:
            hidden_states = layer(
                hidden_states,
                encoder_hidden_states,  # positional, so that gradient checkpointing propagates its gradient
                attention_mask=self_mask,
                encoder_attention_mask=cross_mask,
                position_embeddings=position_embeddings,
                cache=cache,
                **mixer_kwargs,
            )
        return BaseModelOutputWithPastAndCrossAttentions(last_hidden_state=self.final_norm(hidden_states), cache=cache)

    def grow_positions(self, length: int) -> None:
        """Make the position table (sinusoidal rows or rotary cos/sin) cover ``length`` target positions; learned
        positions cannot grow and refuse longer inputs when they meet them."""
        if length > 0:
            positions = self.embed_positions if self.embed_positions is not None else self.rotary
            positions.grow(length)

    def _cross_mask(
        self,
        hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None,
        encoder_hidden_states: torch.Tensor,
        cache: EncoderDecoderCache | None,
    ) -> torch.Tensor | None:
        """The cross-attention mask, built once per generation instead of once per decoding step.

        It depends only on the source padding and the query length, and during ``generate()`` both stay the same
        from the second step on (the encoder mask is the same tensor object every step; beam reordering only swaps
        beams of the same source, whose masks are equal). So the mask of a one-token step is kept on the cache and
        reused while the same mask tensor comes back; anything else rebuilds it.
        """
        q_len = hidden_states.shape[1]
        reusable = cache is not None and q_len == 1 and encoder_attention_mask is not None
        if reusable:
            kept = getattr(cache, "_forge_cross_mask", None)
            if kept is not None and kept[0] is encoder_attention_mask and kept[1] == hidden_states.dtype:
                return kept[2]
        mask = create_bidirectional_mask(
            config=self.config,
            inputs_embeds=hidden_states,
            attention_mask=encoder_attention_mask,
            encoder_hidden_states=encoder_hidden_states,
        )
        if reusable:
            cache._forge_cross_mask = (encoder_attention_mask, hidden_states.dtype, mask)
        return mask


# ---------------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------------


class ForgeModel(ForgePreTrainedModel):
    """The bare encoder-decoder: returns the decoder's last hidden state (and the encoder's)."""

    # `encoder.embed_tokens` and `decoder.embed_tokens` ARE `shared` (one module, see `_share`), whatever
    # tie_word_embeddings says (it unties lm_head only). The file stores the tensor once, as `shared.weight`; on load,
    # transformers recognises the module sharing of custom code, so a checkpoint without it is still reported.
    _keys_to_ignore_on_save = ["encoder.embed_tokens.weight", "decoder.embed_tokens.weight"]

    def __init__(self, config: ForgeConfig):
        super().__init__(config)
        self.shared = ForgeScaledEmbedding.for_config(config)
        self.encoder = ForgeEncoder(config, self.shared)
        self.decoder = ForgeDecoder(config, self.shared)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.shared

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.shared = value
        self.encoder._share(value)
        self.decoder._share(value)

    def get_encoder(self, modality: str | None = None) -> ForgeEncoder:
        return self.encoder

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")  # transformers 4's name, as BART accepts it
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> Seq2SeqModelOutput:
        r"""``output_attentions`` / ``output_hidden_states`` (keyword arguments, or the config fields) add the
        encoder's and decoder's per-layer states and attention weights (eager attention only: the fused kernels do
        not compute the weights); ``return_dict=False`` returns a tuple."""
        _check_kwargs(kwargs, f"{type(self).__name__}.forward")
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            # As BartModel: without decoder inputs, the source shifted right (what feature extraction and
            # AutoModel users pass); training builds them from the labels instead.
            if input_ids is None:
                raise ValueError(
                    "ForgeModel needs `decoder_input_ids` (or `decoder_inputs_embeds`) when called with "
                    "`inputs_embeds`; build them from labels with "
                    "`ForgeForConditionalGeneration.prepare_decoder_input_ids_from_labels`."
                )
            decoder_input_ids = shift_tokens_right(input_ids, self.config.pad_token_id, self.config.decoder_start_token_id)
        # return_dict=True inside: a config with return_dict=False must only change what the caller gets back.
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, return_dict=True, **kwargs
            )
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(
                last_hidden_state=encoder_outputs[0],
                hidden_states=encoder_outputs[1] if len(encoder_outputs) > 1 else None,
                attentions=encoder_outputs[2] if len(encoder_outputs) > 2 else None,
            )
        decoder_outputs = self.decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            encoder_attention_mask=attention_mask,
            cache=cache,
            inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            return_dict=True,
            **kwargs,
        )
        return Seq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            cache=decoder_outputs.cache,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )


def _lm_loss_sum(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Summed cross-entropy of ``hidden @ weight.T`` against ``labels`` (-100 ignored), logits upcast to fp32."""
    logits = F.linear(hidden, weight).float()  # (tokens, vocab)
    return F.cross_entropy(logits, labels, ignore_index=-100, reduction="sum", label_smoothing=label_smoothing)


def chunked_lm_loss_sum(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, chunk_size: int, label_smoothing: float = 0.0
) -> torch.Tensor:
    """``_lm_loss_sum`` over chunks of ``chunk_size`` tokens, each under activation checkpointing.

    hidden: (tokens, d_model); labels: (tokens,). The forward keeps no chunk's logits (only the scalar), and the
    backward recomputes one chunk's logits at a time, so the peak is one (chunk_size, vocab) fp32 tensor instead of
    (tokens, vocab): the price is the lm_head matmul run twice. Liger's fused linear cross-entropy does this without
    the recomputation but needs Triton (GPUs only), hence this portable version.
    """
    from torch.utils.checkpoint import checkpoint

    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[0], chunk_size):
        end = start + chunk_size
        total = total + checkpoint(
            _lm_loss_sum, hidden[start:end], weight, labels[start:end], label_smoothing, use_reentrant=False
        )
    return total


class ForgeCopyGenerator(nn.Module):
    """Pointer-generator output (See et al., 2017; ``ForgeConfig.copy_attention``).

    One attention head of its own over the encoder states gives, per target position, a distribution over the
    source tokens; a gate ``p_gen`` (from the decoder state and that head's context vector) mixes the vocabulary
    softmax with that distribution scattered onto the source tokens' ids. Returns the log of the mixture, in
    float32: log-probabilities that ``F.cross_entropy`` (their log-sum-exp is 0) and ``generate()`` use as they
    use logits. Hand-written: transformers has no pointer-generator layer.
    """

    def __init__(self, config: ForgeConfig):
        super().__init__()
        self.query = nn.Linear(config.d_model, config.d_model, bias=False)
        self.key = nn.Linear(config.d_model, config.d_model, bias=False)
        self.gate = nn.Linear(2 * config.d_model, 1)
        self.scale = config.d_model**-0.5

    def forward(
        self, hidden: torch.Tensor, logits: torch.Tensor, memory: torch.Tensor, source_ids: torch.Tensor,
        memory_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """hidden (batch, tgt, d), logits (batch, tgt, vocab), memory (batch, src, d) the encoder output,
        source_ids (batch, src), memory_mask (batch, src) 1 = real token -> (batch, tgt, vocab) log-probabilities."""
        # q . (W_k m) computed as (q W_k) . m: per target position 2 d^2 + src d operations instead of projecting
        # every source state (src d^2), which a decoding step would otherwise repeat over the whole source
        scores = ((self.query(hidden) @ self.key.weight) @ memory.transpose(1, 2)).float() * self.scale  # (b, tgt, src)
        if memory_mask is not None:
            scores = scores.masked_fill(~memory_mask.bool()[:, None, :], torch.finfo(scores.dtype).min)
        attention = scores.softmax(dim=-1)
        context = attention.to(memory.dtype) @ memory  # (batch, tgt, d)
        p_gen = torch.sigmoid(self.gate(torch.cat([hidden, context], dim=-1)).float())  # (batch, tgt, 1)
        probs = p_gen * logits.float().softmax(dim=-1)
        index = source_ids[:, None, :].expand(-1, hidden.shape[1], -1)
        probs = probs.scatter_add(-1, index, (1.0 - p_gen) * attention)
        return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()


class ForgeForConditionalGeneration(ForgePreTrainedModel, GenerationMixin):
    """Sequence-to-sequence LM (translation, summarisation, denoising pretraining) with ``generate()``."""

    _tied_weights_keys = {"lm_head.weight": "model.shared.weight"}

    def __init__(self, config: ForgeConfig):
        super().__init__(config)
        self.model = ForgeModel(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.copy_generator = ForgeCopyGenerator(config) if config.copy_attention else None
        self.post_init()
        # A tied lm_head is not written to model.safetensors (it is the embedding). Saying so lets the Trainer
        # recognise the key as tied, not lost, when it reloads the best checkpoint (it re-ties instead of warning
        # "missing keys: ['lm_head.weight']"). Untied (tie_word_embeddings=False), lm_head is saved as usual.
        self._keys_to_ignore_on_save = set(self._keys_to_ignore_on_save or ()) | set(self.all_tied_weights_keys)

    def get_encoder(self, modality: str | None = None) -> ForgeEncoder:
        return self.model.encoder

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Shift labels right behind ``decoder_start_token_id`` (-100 becomes pad); used by DataCollatorForSeq2Seq."""
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")  # transformers 4's name, as BART accepts it
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        smoothing: float = 0.0,
        copy_source_ids: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> Seq2SeqLMOutput:
        r"""labels: (batch, target_len) token ids, -100 where no loss is wanted. Without ``decoder_input_ids`` they
        are shifted right to become the decoder inputs.
        smoothing: label smoothing of the loss (``F.cross_entropy``'s ``label_smoothing``, the same value per token
        as transformers' ``LabelSmoother``). The recipes' Trainers pass ``--label_smoothing_factor`` here instead of
        smoothing the returned logits outside the model: one fused pass over the vocabulary instead of several
        (``recipes/core/trainers.py``). Not named ``label_smoothing``: the Trainer takes every forward argument
        whose name contains "label" for a label column (``transformers.utils.find_labels``) and would then skip
        the evaluation loss of batches that lack it.
        copy_source_ids: with ``config.copy_attention``, the source token ids when ``input_ids`` is not given
        (``generate()`` passes them at every step: the encoder ran once, before the loop)."""
        source_ids = input_ids if input_ids is not None else copy_source_ids
        if self.copy_generator is not None and source_ids is None:
            raise ValueError(
                "This model copies source tokens (`config.copy_attention`): pass `input_ids` (or `copy_source_ids` "
                "with `encoder_outputs`); `inputs_embeds` alone do not say which token ids to copy."
            )
        if labels is not None:
            use_cache = False
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            cache=cache,
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            return_dict=True,
            **kwargs,
        )
        hidden = outputs.last_hidden_state  # (batch, target_len, d_model)
        logits = loss = None
        if labels is not None and self.training and self.config.loss_chunk_size and self.copy_generator is None:
            # Opt-in memory saver: no full logits tensor in training (see ForgeConfig.loss_chunk_size).
            labels = labels.to(hidden.device)
            loss_sum = chunked_lm_loss_sum(
                hidden.reshape(-1, hidden.shape[-1]), self.lm_head.weight, labels.reshape(-1), self.config.loss_chunk_size,
                smoothing,
            )
            loss = self._loss(loss_sum, (labels != -100).sum(), num_items_in_batch)
        else:
            logits = scores = self.lm_head(hidden)  # (batch, target_len, vocab)
            if self.copy_generator is not None:  # float32 log-probabilities of the vocabulary + copy mixture
                scores = self.copy_generator(
                    hidden, logits, outputs.encoder_last_hidden_state, source_ids.to(hidden.device), attention_mask
                )
                logits = scores.to(logits.dtype)  # returned in the model's dtype, as the LM head's logits are
            if labels is not None:
                labels = labels.to(logits.device)
                loss_sum = F.cross_entropy(
                    scores.view(-1, scores.shape[-1]).float(), labels.view(-1), ignore_index=-100, reduction="sum",
                    label_smoothing=smoothing,
                )
                loss = self._loss(loss_sum, (labels != -100).sum(), num_items_in_batch)
        return Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            decoder_hidden_states=outputs.decoder_hidden_states,
            decoder_attentions=outputs.decoder_attentions,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
        )

    def generate(self, *args, compiled_decoding: bool | None = None, **kwargs):
        """transformers' ``generate()``. ``compiled_decoding=True``, or ``generation_config.compiled_decoding = True``
        for every call (pipelines included), runs greedy search and sampling through Forge's compiled decoding loop
        (``generation_forge.py``: same tokens, a fraction of the per-step cost; the first call compiles)."""
        if compiled_decoding is None:  # generation_config is generate()'s second positional parameter
            config = kwargs.get("generation_config") or (args[1] if len(args) > 1 else None) or self.generation_config
            compiled_decoding = bool(getattr(config, "compiled_decoding", False))
        if self.copy_generator is not None:
            if compiled_decoding:
                logger.warning_once("compiled_decoding does not cover copy_attention models; decoding eagerly instead.")
                compiled_decoding = False
            if kwargs.get("copy_source_ids") is None and kwargs.get("encoder_outputs") is None:
                # the encoder runs once, before the loop; each decoding step copies from these ids
                source = kwargs.get("input_ids", kwargs.get("inputs", args[0] if args else None))
                if not isinstance(source, torch.Tensor):
                    raise ValueError("A copy_attention model generates from `input_ids` (the ids it copies).")
                kwargs["copy_source_ids"] = source
        if compiled_decoding and kwargs.get("custom_generate") is None:
            kwargs["custom_generate"] = _compiled_decoding
        return super().generate(*args, **kwargs)

    def _reorder_cache(self, cache: EncoderDecoderCache, beam_idx: torch.LongTensor) -> EncoderDecoderCache:
        """Beam search: reorder only the self-attention cache.

        ``beam_idx`` only moves rows between beams of the same source, whose cross-attention keys/values are
        identical (the encoder output is repeated per beam), so copying those every step would be wasted work.
        """
        cache.self_attention_cache.reorder_cache(beam_idx)
        return cache


# ---------------------------------------------------------------------------------------------------------------
# Encoder-only heads: they run the encoder alone and load it from any Forge checkpoint
# ---------------------------------------------------------------------------------------------------------------


class ForgeEncoderModel(ForgePreTrainedModel):
    """The embedding and the encoder only (``shared`` + ``encoder``, the same names as in ``ForgeModel``)."""

    _keys_to_ignore_on_save = ["encoder.embed_tokens.weight"]  # the same module as `shared` (see ForgeModel)

    # A seq2seq checkpoint also holds the decoder and lm_head; an encoder model does not use them: no warning.
    _keys_to_ignore_on_load_unexpected = [r"(^|\.)decoder\.", r"(^|\.)lm_head\."]

    def __init__(self, config: ForgeConfig):
        super().__init__(config)
        self.shared = ForgeScaledEmbedding.for_config(config)
        self.encoder = ForgeEncoder(config, self.shared)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.shared

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.shared = value
        self.encoder._share(value)

    def get_encoder(self, modality: str | None = None) -> ForgeEncoder:
        return self.encoder

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutput:
        return self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, return_dict=True, **kwargs
        )


class _ForgeEncoderHead(ForgePreTrainedModel):
    """Base of the encoder heads: ``self.model`` is a ForgeEncoderModel."""

    _keys_to_ignore_on_load_unexpected = ForgeEncoderModel._keys_to_ignore_on_load_unexpected

    def get_encoder(self, modality: str | None = None) -> ForgeEncoder:
        return self.model.encoder


class ForgeClassificationHead(nn.Module):
    """Pooled encoder states -> dense -> tanh -> dropout -> out_proj."""

    def __init__(self, config: ForgeConfig):
        super().__init__()
        self.dense = nn.Linear(config.d_model, config.d_model)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.out_proj = nn.Linear(config.d_model, config.num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.dropout(torch.tanh(self.dense(pooled))))


class ForgeForSequenceClassification(_ForgeEncoderHead):
    """Sentence (pair) classification or regression: mean (or max, ``config.classifier_pooling``) over the non-pad
    encoder states, then a small MLP."""

    def __init__(self, config: ForgeConfig):
        super().__init__(config)
        self.model = ForgeEncoderModel(config)
        self.classifier = ForgeClassificationHead(config)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SequenceClassifierOutput:
        r"""labels: (batch,) class ids (or floats for regression, (batch, num_labels) multi-hot for multi-label)."""
        hidden = self.model(
            input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, return_dict=True, **kwargs
        )
        states = hidden.last_hidden_state  # (batch, time, d_model)
        if self.config.classifier_pooling == "max":
            if attention_mask is not None:  # padding never wins the max
                states = states.masked_fill(~attention_mask.bool().unsqueeze(-1), torch.finfo(states.dtype).min)
            pooled = states.amax(dim=1)
        elif attention_mask is None:
            pooled = states.mean(dim=1)
        else:
            weights = attention_mask.to(states.dtype).unsqueeze(-1)  # (batch, time, 1)
            pooled = (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        logits = self.classifier(pooled)  # (batch, num_labels)
        loss = None
        if labels is not None:
            loss = self._classification_loss(logits, labels.to(logits.device), num_items_in_batch)
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=hidden.hidden_states, attentions=hidden.attentions
        )

    def _classification_loss(self, logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch) -> torch.Tensor:
        """Regression (MSE), single-label (cross-entropy) or multi-label (BCE), as transformers' heads decide."""
        if self.config.problem_type is None:
            if self.config.num_labels == 1:
                self.config.problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                self.config.problem_type = "single_label_classification"
            else:
                self.config.problem_type = "multi_label_classification"
        if self.config.problem_type == "regression":
            predictions = logits.squeeze(-1) if self.config.num_labels == 1 else logits
            loss_sum = F.mse_loss(predictions.float(), labels.float(), reduction="sum")
            return self._loss(loss_sum, labels.numel(), num_items_in_batch)
        if self.config.problem_type == "single_label_classification":
            loss_sum = F.cross_entropy(logits.float(), labels.view(-1), ignore_index=-100, reduction="sum")
            return self._loss(loss_sum, (labels != -100).sum(), num_items_in_batch)
        loss_sum = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="sum")
        return self._loss(loss_sum, labels.numel(), num_items_in_batch)


class ForgeForTokenClassification(_ForgeEncoderHead):
    """Per-token labels (NER, semantic role labelling) from the encoder states."""

    def __init__(self, config: ForgeConfig):
        super().__init__(config)
        self.model = ForgeEncoderModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        # config.classifier_predicate_context: [token; predicate] -> d_model, added to the token's state
        self.predicate_context = nn.Linear(2 * config.d_model, config.d_model) if config.classifier_predicate_context else None
        self.classifier = nn.Linear(config.d_model, config.num_labels)
        self.post_init()

    def _with_predicate(self, states: torch.Tensor, input_ids: torch.LongTensor | None) -> torch.Tensor:
        """Each token's state plus GELU(W [token; predicate]), the predicate being the token after the marker."""
        marker = self.config.predicate_marker_id
        if input_ids is None or marker is None:
            raise ValueError(
                "This token classifier reads the predicate's position from the marker token in `input_ids` "
                "(`config.classifier_predicate_context`), so it needs `input_ids` and `config.predicate_marker_id` "
                f"(got input_ids={'None' if input_ids is None else 'given'}, predicate_marker_id={marker})."
            )
        is_marker = input_ids == marker
        # the first marker of each row; the predicate's first subword follows it (rows without one get zeros)
        position = (is_marker.int().argmax(dim=1) + 1).clamp(max=states.shape[1] - 1)
        predicate = states.gather(1, position[:, None, None].expand(-1, 1, states.shape[-1]))
        predicate = predicate * is_marker.any(dim=1)[:, None, None].to(states.dtype)
        pair = torch.cat([states, predicate.expand_as(states)], dim=-1)
        return states + F.gelu(self.predicate_context(pair))

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> TokenClassifierOutput:
        r"""labels: (batch, time) label ids, -100 on tokens without a label (padding, sub-word continuations)."""
        hidden = self.model(
            input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, return_dict=True, **kwargs
        )
        states = hidden.last_hidden_state
        if self.predicate_context is not None:
            states = self._with_predicate(states, input_ids)
        logits = self.classifier(self.dropout(states))  # (batch, time, num_labels)
        loss = None
        if labels is not None:
            labels = labels.to(logits.device)
            loss_sum = F.cross_entropy(
                logits.view(-1, logits.shape[-1]).float(), labels.view(-1), ignore_index=-100, reduction="sum"
            )
            loss = self._loss(loss_sum, (labels != -100).sum(), num_items_in_batch)
        return TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=hidden.hidden_states, attentions=hidden.attentions
        )


class ForgeForQuestionAnswering(_ForgeEncoderHead):
    """Extractive QA: start and end logits over the encoder states of (question, context)."""

    # The span loss is a per-example mean; the Trainer then scales it for gradient accumulation itself.
    accepts_loss_kwargs = False

    def __init__(self, config: ForgeConfig):
        super().__init__(config)
        self.model = ForgeEncoderModel(config)
        # config.qa_lexical_match: row 1 is added to tokens whose id occurs in the other segment; row 0 stays zero
        self.lexical_match = (
            ForgeScaledEmbedding(2, config.d_model, self.model.shared.embed_scale, padding_idx=0)
            if config.qa_lexical_match else None
        )
        self.qa_outputs = nn.Linear(config.d_model, 2)
        self.post_init()

    def lexical_match_flags(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """(batch, time) bool: the token's id occurs in the other segment (question before the first eos, context after).

        Separators (eos) and padding never match, nor does a token repeated within one segment only. Comparing every
        pair of positions costs batch * time^2 booleans (4.7 MB for 32 windows of 384 tokens), small beside attention.
        """
        eos = self.config.eos_token_id
        eos = eos[0] if isinstance(eos, (list, tuple)) else eos
        is_eos = input_ids == eos
        valid = ~is_eos if attention_mask is None else (~is_eos & attention_mask.bool())
        question = (is_eos.int().cumsum(dim=1) == 0) & valid
        context = ~question & valid
        same = input_ids[:, :, None] == input_ids[:, None, :]  # (batch, time, time)
        in_question = (same & question[:, None, :]).any(dim=-1) & context
        in_context = (same & context[:, None, :]).any(dim=-1) & question
        return in_question | in_context

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        start_positions: torch.LongTensor | None = None,
        end_positions: torch.LongTensor | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> QuestionAnsweringModelOutput:
        r"""start_positions / end_positions: (batch,) token indices of the answer span; out-of-range ones are
        ignored."""
        if self.lexical_match is not None:
            if input_ids is None:
                raise ValueError(
                    "This QA model marks the tokens the question and the context share (`config.qa_lexical_match`), "
                    "so it needs `input_ids`, not `inputs_embeds` alone."
                )
            if inputs_embeds is None:
                inputs_embeds = self.model.shared(input_ids)
            inputs_embeds = inputs_embeds + self.lexical_match(self.lexical_match_flags(input_ids, attention_mask).long())
            input_ids = None
        hidden = self.model(
            input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, return_dict=True, **kwargs
        )
        start_logits, end_logits = self.qa_outputs(hidden.last_hidden_state).unbind(dim=-1)  # each (batch, time)
        loss = None
        if start_positions is not None and end_positions is not None:
            length = start_logits.shape[1]
            # Positions outside the sequence (answer truncated away) are ignored, as in transformers' QA heads.
            start = start_positions.view(-1).to(start_logits.device).clamp(0, length)
            end = end_positions.view(-1).to(end_logits.device).clamp(0, length)
            start_loss = F.cross_entropy(start_logits.float(), start, ignore_index=length)
            end_loss = F.cross_entropy(end_logits.float(), end, ignore_index=length)
            loss = (start_loss + end_loss) / 2
        return QuestionAnsweringModelOutput(
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=hidden.hidden_states,
            attentions=hidden.attentions,
        )


__all__ = [
    "ForgePreTrainedModel",
    "ForgeModel",
    "ForgeEncoderModel",
    "ForgeForConditionalGeneration",
    "ForgeForSequenceClassification",
    "ForgeForQuestionAnswering",
    "ForgeForTokenClassification",
]
