"""Configuration of Forge, an encoder-decoder Transformer, and its size presets.

Field names follow BART (``d_model``, ``encoder_layers``, ``decoder_ffn_dim``, ...) so that a transformers user can
compare shapes one to one. The variants beyond BART are a few fields with a small number of choices:

* ``position_embedding_type``: ``"sinusoidal"`` (the original Transformer, fixed), ``"learned"`` (a table of
  ``max_position_embeddings`` rows; longer inputs raise), ``"rotary"`` (RoPE on self-attention queries and keys).
* ``norm_type``: ``"layernorm"`` or ``"rmsnorm"``.
* ``norm_position``: ``"pre"`` (the default: norm before each sublayer, a final norm after each stack) or ``"post"``
  (the original Transformer's and BART's: norm after each residual sum, and a norm on the embeddings instead of a
  final one). Measured on forge-small from scratch (README, "Quality per CPU-minute"): post-norm translated better
  (Multi30k 39.3 vs 37.0 sacreBLEU in 30 CPU-minutes) but stalled on SST-2 at the same learning rate.
* ``ffn_type``: ``"mlp"`` (``fc2(act(fc1(x)))``, as BART) or ``"gated"`` (``fc2(act(gate(x)) * up(x))``).
  ``ffn_type="gated"`` with ``activation_function="silu"`` is SwiGLU; with ``"gelu"`` it is GeGLU.
* ``encoder_mixer`` / ``decoder_mixer``: the token-mixing sublayer of each layer: ``"attention"`` (self-attention,
  the default), ``"conv"`` (a lightweight depthwise convolution over ``conv_kernel_size`` tokens, causal in the
  decoder) or ``"recurrent"`` (a ``recurrent_cell`` GRU/LSTM, bidirectional in the encoder); one name for every
  layer, or a list with one name per layer for a hybrid (``["conv", "conv", "attention", "attention"]``). The
  decoder's cross-attention is always attention. See ``mixers_forge.py``.

A preset is loaded by name: ``ForgeConfig.from_pretrained("forge-small", vocab_size=8000)``; keyword arguments
override the preset.
"""

from __future__ import annotations

import difflib
import os

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.activations import ACT2FN


POSITION_EMBEDDING_TYPES = ("sinusoidal", "learned", "rotary")
NORM_TYPES = ("layernorm", "rmsnorm")
NORM_POSITIONS = ("pre", "post")
FFN_TYPES = ("mlp", "gated")
MIXER_TYPES = ("attention", "conv", "recurrent")
RECURRENT_CELLS = ("gru", "lstm")

# Size presets (name -> ForgeConfig keyword arguments). Parameter counts: `python -m modeling`.
PRESETS: dict[str, dict] = {
    "forge-tiny": dict(
        vocab_size=512, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=512,
    ),
    "forge-small": dict(
        vocab_size=16384, d_model=256, encoder_layers=4, decoder_layers=4, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=1024, decoder_ffn_dim=1024, max_position_embeddings=1024,
    ),
    "forge-base": dict(
        vocab_size=32768, d_model=512, encoder_layers=8, decoder_layers=8, encoder_attention_heads=8,
        decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048, max_position_embeddings=1024,
    ),
    "forge-large": dict(
        vocab_size=32768, d_model=1024, encoder_layers=12, decoder_layers=12, encoder_attention_heads=16,
        decoder_attention_heads=16, encoder_ffn_dim=4096, decoder_ffn_dim=4096, max_position_embeddings=1024,
    ),
    "forge-xl": dict(
        vocab_size=32768, d_model=1536, encoder_layers=14, decoder_layers=14, encoder_attention_heads=24,
        decoder_attention_heads=24, encoder_ffn_dim=6144, decoder_ffn_dim=6144, max_position_embeddings=1024,
    ),
}

# Keyword arguments of `PreTrainedConfig.from_pretrained` that only concern downloading; a preset ignores them.
_HUB_KWARGS = (
    "cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies",
    "trust_remote_code", "_from_auto", "_from_pipeline", "code_revision", "resume_download", "user_agent",
)


@strict
class ForgeConfig(PreTrainedConfig):
    r"""Configuration of a Forge encoder-decoder model.

    Args (beyond BART's, which keep BART's meaning):
        position_embedding_type: ``"sinusoidal"``, ``"learned"`` or ``"rotary"``.
        rope_theta: base of the rotary frequencies (``position_embedding_type="rotary"`` only).
        norm_type: ``"layernorm"`` or ``"rmsnorm"``.
        norm_position: ``"pre"`` (``x + f(norm(x))``, then a final norm per stack; stable at any depth) or ``"post"``
            (``norm(x + f(x))``, with a norm on the embedding sum as BART's ``layernorm_embedding``; the original
            Transformer's placement, which needs warm-up).
        layer_norm_eps: epsilon of every norm.
        ffn_type: ``"mlp"`` or ``"gated"`` (gated + ``activation_function="silu"`` is SwiGLU).
        scale_embedding: multiply token embeddings by ``sqrt(d_model)`` (as the original Transformer).
        classifier_dropout: dropout of the sequence classification head.
        classifier_pooling: how the sequence classification head reads the encoder states: ``"mean"`` over the
            non-pad tokens or ``"max"`` (the largest value of each feature over the non-pad tokens, max-over-time
            pooling as in Kim, 2014, and InferSent's BiLSTM-max).
        classifier_predicate_context: token classification (semantic role labelling): each token's state is joined
            with the state of the predicate, the token right after the ``predicate_marker_id`` marker in the input,
            through one GELU layer added to the token's state, before the classifier (Shi & Lin, 2019, feed the same
            pair to their tagger). Every token then sees the predicate directly instead of through attention.
        predicate_marker_id: the id of the token that marks the predicate in the input (SRL's ``<pred>``); needed
            with ``classifier_predicate_context``. ``recipes.srl`` sets both.
        qa_lexical_match: extractive question answering: a learned vector is added to the embedding of every
            context token whose id also occurs in the question, and of every question token whose id occurs in the
            context (DrQA's exact-match feature, Chen et al., 2017). The question is everything before the first
            ``eos_token_id`` (Forge's pair template is ``question </s> context </s>``). Without it the encoder has to
            learn from the data which tokens of the two segments are the same word before it can align them.
        copy_attention: sequence-to-sequence LM: a pointer-generator output layer (See et al., 2017). Each decoding
            step also attends over the encoder states (one head of its own) and mixes two distributions, the
            vocabulary softmax and that attention scattered onto the source tokens' ids, with a learned gate; the
            model's ``logits`` are then the log of the mixture (log-probabilities, which ``generate()`` and the loss
            read as they read logits). A model trained from scratch can copy names and numbers of the source from
            its first steps instead of learning each word's output row first. ``loss_chunk_size`` does not apply.
        loss_chunk_size: ``None`` (default) or a number of target tokens: in training with labels, the seq2seq LM head
            computes lm_head + cross-entropy over chunks of that many tokens, recomputed in the backward, so the full
            ``(tokens, vocab)`` fp32 logits tensor never exists (the output's ``logits`` is then ``None``); same loss
            and gradients. Evaluation and ``generate()`` are unchanged.
        encoder_mixer: token-mixing sublayer of the encoder layers: ``"attention"``, ``"conv"`` or ``"recurrent"``,
            or a list of those with one entry per encoder layer (a hybrid).
        decoder_mixer: the same for the decoder's self-attention sublayers (cross-attention stays attention).
        conv_kernel_size: tokens each ``"conv"`` layer sees (odd; centred in the encoder, the current token and
            ``conv_kernel_size - 1`` before it in the decoder).
        recurrent_cell: ``"gru"`` or ``"lstm"`` for the ``"recurrent"`` layers.

    ``num_hidden_layers`` reads ``decoder_layers`` (the KV cache is sized from it), ``hidden_size`` reads ``d_model``.

    Example:
        >>> config = ForgeConfig.from_pretrained("forge-small", vocab_size=8000)
        >>> config.num_hidden_layers
        4
    """

    model_type = "forge"
    attribute_map = {
        "hidden_size": "d_model",
        "num_hidden_layers": "decoder_layers",
        "num_attention_heads": "decoder_attention_heads",
        # GPT-2's / T5's name for the same field (transformers' own test helpers set it on every config).
        "layer_norm_epsilon": "layer_norm_eps",
    }

    vocab_size: int = 16384
    d_model: int = 256
    encoder_layers: int = 4
    decoder_layers: int = 4
    encoder_attention_heads: int = 4
    decoder_attention_heads: int = 4
    encoder_ffn_dim: int = 1024
    decoder_ffn_dim: int = 1024
    activation_function: str = "gelu"
    ffn_type: str = "mlp"
    position_embedding_type: str = "sinusoidal"
    rope_theta: float = 10000.0
    norm_type: str = "layernorm"
    norm_position: str = "pre"
    layer_norm_eps: float = 1e-5
    max_position_embeddings: int = 1024
    scale_embedding: bool = True
    dropout: float | int = 0.1
    attention_dropout: float | int = 0.0
    activation_dropout: float | int = 0.0
    classifier_dropout: float | int = 0.0
    classifier_pooling: str = "mean"
    classifier_predicate_context: bool = False
    predicate_marker_id: int | None = None
    qa_lexical_match: bool = False
    copy_attention: bool = False
    encoder_mixer: str | list[str] = "attention"
    decoder_mixer: str | list[str] = "attention"
    conv_kernel_size: int = 7
    recurrent_cell: str = "gru"
    init_std: float = 0.02
    use_cache: bool = True
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    decoder_start_token_id: int | None = 1
    is_encoder_decoder: bool = True
    tie_word_embeddings: bool = True
    loss_chunk_size: int | None = None

    def __post_init__(self, **kwargs):
        _check_for_misspelled_fields(type(self), kwargs)
        super().__post_init__(**kwargs)
        self._check()

    def _check(self) -> None:
        """Raise a ValueError that names the field and the fix for every invalid setting."""
        if self.loss_chunk_size is not None and self.loss_chunk_size < 1:
            raise ValueError(
                f"`loss_chunk_size` must be a positive number of tokens (e.g. 1024) or None, got {self.loss_chunk_size}."
            )
        for name in ("vocab_size", "d_model", "encoder_layers", "decoder_layers", "encoder_ffn_dim",
                     "decoder_ffn_dim", "max_position_embeddings", "encoder_attention_heads",
                     "decoder_attention_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {getattr(self, name)}.")
        for heads_field in ("encoder_attention_heads", "decoder_attention_heads"):
            heads = getattr(self, heads_field)
            if self.d_model % heads != 0:
                raise ValueError(
                    f"`d_model` ({self.d_model}) must be divisible by `{heads_field}` ({heads}); "
                    f"change one of them, e.g. `{heads_field}={_largest_divisor(self.d_model, heads)}`."
                )
        choices = {
            "position_embedding_type": POSITION_EMBEDDING_TYPES,
            "norm_type": NORM_TYPES,
            "norm_position": NORM_POSITIONS,
            "ffn_type": FFN_TYPES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"`{name}` must be one of {allowed}, got {getattr(self, name)!r}.")
        if self.activation_function not in ACT2FN:
            raise ValueError(
                f"`activation_function` {self.activation_function!r} is unknown; use one of transformers' "
                f"activations, e.g. 'gelu', 'relu' or 'silu' (with `ffn_type='gated'`, 'silu' gives SwiGLU)."
            )
        if self.position_embedding_type == "sinusoidal" and self.d_model % 2:
            raise ValueError(f"`d_model` must be even for sinusoidal positions, got {self.d_model}.")
        if self.position_embedding_type == "rotary":
            for heads_field in ("encoder_attention_heads", "decoder_attention_heads"):
                head_dim = self.d_model // getattr(self, heads_field)
                if head_dim % 2:
                    raise ValueError(
                        f"rotary positions need an even head dimension, but `d_model / {heads_field}` = {head_dim}; "
                        f"change `d_model` or `{heads_field}`."
                    )
            if self.rope_theta <= 0:
                raise ValueError(f"`rope_theta` must be positive, got {self.rope_theta}.")
        for name in ("dropout", "attention_dropout", "activation_dropout", "classifier_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"`{name}` is a probability in [0, 1), got {value}.")
        if self.predicate_marker_id is not None and not 0 <= self.predicate_marker_id < self.vocab_size:
            raise ValueError(
                f"`predicate_marker_id` must be a token id in 0..{self.vocab_size - 1}, got {self.predicate_marker_id}."
            )
        if self.classifier_pooling not in ("mean", "max"):
            raise ValueError(f"`classifier_pooling` must be 'mean' or 'max', got {self.classifier_pooling!r}.")
        if self.qa_lexical_match and self.eos_token_id is None:
            raise ValueError("`qa_lexical_match` finds the end of the question at the first `eos_token_id`; set it.")
        if self.init_std <= 0:
            raise ValueError(f"`init_std` must be positive, got {self.init_std}.")
        for stack in ("encoder", "decoder"):
            self.layer_mixers(stack)  # raises on a bad name or a list of the wrong length
        if "recurrent" in self.layer_mixers("encoder") and self.d_model % 2:
            raise ValueError(
                f"`encoder_mixer='recurrent'` splits `d_model` between the two directions, so `d_model` must be even, "
                f"got {self.d_model}."
            )
        if not isinstance(self.conv_kernel_size, int) or self.conv_kernel_size < 1 or self.conv_kernel_size % 2 == 0:
            raise ValueError(
                f"`conv_kernel_size` must be a positive odd integer (the encoder's window is centred on each token), "
                f"got {self.conv_kernel_size!r}; e.g. 3, 7 or 31."
            )
        if self.recurrent_cell not in RECURRENT_CELLS:
            raise ValueError(f"`recurrent_cell` must be one of {RECURRENT_CELLS}, got {self.recurrent_cell!r}.")

    def layer_mixers(self, stack: str) -> list[str]:
        """The token mixer of every layer of ``stack`` (``"encoder"`` or ``"decoder"``): one name per layer.

        The one place where ``encoder_mixer`` / ``decoder_mixer`` (a name, or a list of names) is read; raises a
        ValueError naming the field for an unknown mixer or a list whose length is not the number of layers.
        """
        field_name, num_layers = f"{stack}_mixer", getattr(self, f"{stack}_layers")
        value = getattr(self, field_name)
        if isinstance(value, str):
            names = [value] * num_layers
        elif isinstance(value, (list, tuple)):
            names = list(value)
        else:
            raise ValueError(
                f"`{field_name}` must be a mixer name {MIXER_TYPES} or a list of them (one per {stack} layer), "
                f"got {value!r}."
            )
        for name in names:
            if name not in MIXER_TYPES:
                close = difflib.get_close_matches(str(name), MIXER_TYPES, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(
                    f"`{field_name}` must be one of {MIXER_TYPES} or a list of them, one per {stack} layer; "
                    f"got {name!r}{hint}."
                )
        if len(names) != num_layers:
            raise ValueError(
                f"`{field_name}` lists {len(names)} mixers but `{stack}_layers` is {num_layers}: give one name per "
                f"layer (e.g. {[names[0]] * num_layers if names else ['attention'] * num_layers}), or a single name "
                "for all of them."
            )
        return names

    def token_embedding_std(self) -> float:
        """Init std of the token embedding: ``d_model ** -0.5`` when ``scale_embedding`` (so the scaled embedding has
        unit variance, the scale of the sinusoidal table added to it, as in Vaswani et al. and fairseq), else
        ``init_std``.

        With ``init_std`` (0.02) under the sqrt(d_model) scale the token signal started at RMS 0.02 * sqrt(d_model)
        (0.23 at d_model 128, 0.32 at 256) against 0.71 for the positions: the positions drowned the tokens and
        training started measurably slower than BART of the same shape (bench/results/loss_forge_vs_bart_mt2k.json).
        """
        return self.d_model**-0.5 if self.scale_embedding else self.init_std

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> "ForgeConfig":
        """Load a config from a folder / Hub id, or build a preset by name (``"forge-small"``, see ``PRESETS``).

        Keyword arguments override the preset's values, e.g. ``from_pretrained("forge-small", vocab_size=8000)``.
        A local folder of the same name as a preset wins over the preset.
        """
        name = str(pretrained_model_name_or_path)
        if name in PRESETS and not os.path.exists(name):
            return_unused_kwargs = kwargs.pop("return_unused_kwargs", False)
            for key in _HUB_KWARGS:
                kwargs.pop(key, None)
            config = cls(**{**PRESETS[name], **kwargs})
            return (config, {}) if return_unused_kwargs else config
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)


def _check_for_misspelled_fields(cls: type, extra: dict) -> None:
    """Refuse keys that look like a misspelled Forge field (``d_modle``), naming the field they resemble.

    Configs accept arbitrary extra keys (Hub metadata, task settings such as ``prefix``), so an unknown key
    alone is not an error; one that is a near miss of a real field would otherwise be silently ignored.
    """
    known = set(getattr(cls, "__dataclass_fields__", {})) | set(cls.attribute_map)
    for key in extra:
        if key.startswith("_") or key in known:
            continue
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.85)
        if close:
            raise ValueError(f"Unknown config field `{key}`: did you mean `{close[0]}`? Fix the name in the config.")


def _largest_divisor(n: int, at_most: int) -> int:
    """Largest divisor of ``n`` not above ``at_most`` (used to suggest a valid head count)."""
    return max(d for d in range(1, max(1, at_most) + 1) if n % d == 0)


__all__ = [
    "ForgeConfig", "PRESETS", "POSITION_EMBEDDING_TYPES", "NORM_TYPES", "NORM_POSITIONS", "FFN_TYPES", "MIXER_TYPES", "RECURRENT_CELLS",
]
