"""Compiled decoding for Forge's seq2seq head: greedy and sampled ``generate()`` with one compiled decoder step.

``generate()`` spends most of a batch-1 decoding step outside the model on a CPU: per-step input preparation, cache
bookkeeping and mask building, then the model's own ~30 small operations, each paying PyTorch's dispatch cost
(``bench/profile_model.py --what decode_step``). transformers' switch for this (``cache_implementation="static"``
with a ``compile_config``) compiles the model's forward, but keeps its generation loop around it, and bought 3-14%
here (``bench/decode_latency.py``). This module keeps transformers' ``generate()`` for everything before the loop
(encoder, special tokens, lengths, logits processors, stopping criteria) and replaces only the loop, through
generate's own ``custom_generate`` hook:

* the decoder runs on a static cache (preallocated keys and values), so every step has the same shapes;
* one step, decoder plus ``lm_head`` on the last position, is compiled once by ``torch.compile`` and reused;
* the source is padded to a multiple of ``SOURCE_BUCKET`` tokens (masked) and the cache to a multiple of
  ``TARGET_BUCKET``, so inputs of different lengths reuse a few compiled steps instead of compiling one each;
* the logits processors and stopping criteria are transformers' own, applied exactly as ``_sample`` applies them
  (min/max length, EOS, repetition penalty, sampling warpers, ...), so the tokens are those of the usual loop.

Turn it on per call, ``model.generate(..., compiled_decoding=True)``, or for every call (pipelines included),
``model.generation_config.compiled_decoding = True``. The first call with a new batch size or length bucket
compiles (tens of seconds on a CPU); past ``torch._dynamo.config.recompile_limit`` such variants (8 by default,
models counted apart), dynamo runs new ones uncompiled and says so. The cache holds ``max_length`` rounded up to
the bucket, so a large ``max_length`` makes every step attend over that many (masked) positions. What the loop does not handle goes to transformers' own method unchanged:
beam search, ``return_dict_in_generate``, streamers, synced GPUs, conv/recurrent decoder mixers, extra model inputs.

On a CPU a batch-1 step is bound by reading the weights. A model loaded with int8 weights by torchao
(``from_pretrained(folder, dtype=torch.bfloat16, quantization_config=TorchAoConfig(Int8WeightOnlyConfig()))``) keeps
torchao's tensors in the compiled step, and inductor runs their products with its int8 matrix-vector kernel
(``bench/decode_latency.py --variants int8_compiled_decoding``).
"""

import math

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from transformers import GenerationMixin
from transformers.cache_utils import EncoderDecoderCache, StaticCache
from transformers.generation.logits_process import MinLengthLogitsProcessor, MinNewTokensLengthLogitsProcessor
from transformers.generation.stopping_criteria import EosTokenCriteria, MaxLengthCriteria
from transformers.utils import logging


logger = logging.get_logger(__name__)

SOURCE_BUCKET = 64  # source lengths are padded (and masked) to a multiple of this
TARGET_BUCKET = 64  # the self-attention cache holds a multiple of this many tokens
# What generate() hands the loop for an encoder-decoder model; anything else goes to transformers' own loop.
_HANDLED_MODEL_KWARGS = frozenset({"encoder_outputs", "attention_mask", "cache", "use_cache", "logits_to_keep"})


_compiled_step = None  # decode_step compiled, made on first use (one per process: it guards on the model it gets)
SMALL_ROWS = 4  # matmuls with at most this many rows (batch x 1 token) count as matrix-vector products
REDUCED_DTYPES = (torch.bfloat16, torch.float16)  # weight types whose CPU matrix-vector products are rewritten


class _HalfMatvecsAsReductions(TorchFunctionMode):
    """Inside a compiled CPU step with bfloat16/float16 weights: ``F.linear`` on a few rows written as multiply-and-sum.

    PyTorch's CPU matmul for a bf16 matrix times one vector took 84-107 us for this model's 256-1024 wide layers
    (fp32: 23-40 us): a matrix-vector product is a read of the weights, and the library call costs more than the
    read. Written as ``(x * W).sum(-1)``, inductor fuses it with the bf16 -> fp32 conversion into one pass over the
    weights (accumulating in fp32, as the library does); the 25 products of a forge-small step, compiled as one
    graph, took 1.09 ms this way against 2.41 ms for fp32 library calls. fp32 weights keep the library call: over
    a whole generate() call it was the faster of the two (4.56 against 5.09 ms per new token, interleaved).
    ``bench/results/explore/compiled_decoding_matvec.{py,log}`` holds these measurements.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear:
            x, weight = args[0], args[1]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            if x.numel() // x.shape[-1] <= SMALL_ROWS and _is_plain(weight):
                out = (x.unsqueeze(-2).float() * weight.float()).sum(-1)
                if bias is not None:
                    out = out + bias.float()
                return out.to(x.dtype)
        return func(*args, **kwargs)


def _is_plain(weight: torch.Tensor) -> bool:
    """A weight stored as an ordinary tensor (not a quantized tensor subclass, which brings its own kernel)."""
    return type(weight) in (torch.Tensor, torch.nn.Parameter)


def decode_step(
    model, input_ids: torch.LongTensor, encoder_hidden: torch.Tensor, source_mask: torch.Tensor, cache: EncoderDecoderCache
) -> torch.Tensor:
    """One decoding step: the decoder on the static cache, then ``lm_head`` on the last position, as float32 logits
    (what transformers' loop takes from the model's output)."""
    weight = model.lm_head.weight
    if torch.compiler.is_compiling() and weight.device.type == "cpu" and weight.dtype in REDUCED_DTYPES:
        with _HalfMatvecsAsReductions():
            return _decode(model, input_ids, encoder_hidden, source_mask, cache)
    return _decode(model, input_ids, encoder_hidden, source_mask, cache)


def _decode(model, input_ids, encoder_hidden, source_mask, cache) -> torch.Tensor:
    hidden = model.model.decoder(
        input_ids=input_ids,
        encoder_hidden_states=encoder_hidden,
        encoder_attention_mask=source_mask,
        cache=cache,
        use_cache=True,
    ).last_hidden_state
    return model.lm_head(hidden[:, -1]).float()


def compiled_step():
    global _compiled_step
    if _compiled_step is None:
        _compiled_step = _compile(decode_step)
    return _compiled_step


def _compile(step):
    # dynamic=False: the shapes are fixed by the buckets, and a static graph is the fast one.
    return torch.compile(step, dynamic=False)


class _GuardedOnce:
    """Calls a compiled step with dynamo's guards checked in full on the first ``FULL_CHECKS`` calls of a generate()
    call only (the first may still set state it caches on the cache object). Every later step has those calls'
    shapes, model and cache objects; re-checking their guards each step (~100 parameters) costs ~0.5 ms on a CPU.
    Dynamo still checks what tells its compiled entries apart (other batch sizes or buckets)."""

    FULL_CHECKS = 2

    def __init__(self, step):
        self.step, self.full_checks = step, self.FULL_CHECKS

    def __call__(self, *args):
        if self.full_checks:
            self.full_checks -= 1
            return self.step(*args)
        with torch.compiler.set_stance("default", skip_guard_eval_unsafe=True):
            return self.step(*args)


# --- greedy search with the token choice inside the compiled step -------------------------------------------------
# The common request (greedy, at most a minimum length, EOS and max_length) needs no Python between two steps but
# "stop?": its processor and criteria are two comparisons, done here inside the graph exactly as transformers' code
# does them (``torch.where(eos, -inf, scores)``, ``argmax``, padding of ended rows, ``isin(EOS)``).
_compiled_greedy_step = None


def choose_greedy(
    logits: torch.Tensor,
    unfinished: torch.Tensor,
    length: torch.Tensor,
    min_length: torch.Tensor,
    eos_mask: torch.Tensor,
    eos_ids: torch.Tensor,
    pad_token_id: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The next tokens and the rows still running, from float32 logits, as MinLength/MinNewTokensLength, argmax and
    EosTokenCriteria give them for a sequence of ``length`` tokens so far."""
    scores = torch.where(eos_mask & (length < min_length), -math.inf, logits)
    next_tokens = torch.argmax(scores, dim=-1)
    next_tokens = next_tokens * unfinished + pad_token_id * (1 - unfinished)
    unfinished = unfinished & ~torch.isin(next_tokens, eos_ids)
    return next_tokens, unfinished


def greedy_step(model, tokens, encoder_hidden, source_mask, cache, unfinished, length, min_length, eos_mask, eos_ids, pad):
    logits = decode_step(model, tokens, encoder_hidden, source_mask, cache)
    return choose_greedy(logits, unfinished, length, min_length, eos_mask, eos_ids, pad)


def compiled_greedy_step():
    global _compiled_greedy_step
    if _compiled_greedy_step is None:
        _compiled_greedy_step = _compile(greedy_step)
    return _compiled_greedy_step


def _greedy_plan(logits_processor, stopping_criteria, generation_config) -> dict | None:
    """When the request is greedy search with only min-length processors and EOS / max-length criteria: the minimum
    total length, the EOS ids and max_length that reproduce them; otherwise None."""
    if generation_config.do_sample:
        return None
    eos, min_length, max_length = None, 0, None
    for criteria in stopping_criteria:
        if type(criteria) is MaxLengthCriteria:
            max_length = criteria.max_length
        elif type(criteria) is EosTokenCriteria:
            eos = criteria.eos_token_id
        else:
            return None
    if max_length is None or eos is None:
        return None
    for processor in logits_processor:
        if type(processor) is MinLengthLogitsProcessor:
            threshold = processor.min_length
        elif type(processor) is MinNewTokensLengthLogitsProcessor:
            threshold = processor.prompt_length_to_skip + processor.min_new_tokens
        else:
            return None
        if not torch.equal(processor.eos_token_id.flatten().sort().values, eos.flatten().sort().values):
            return None
        min_length = max(min_length, threshold)
    return {"min_length": min_length, "max_length": max_length, "eos_ids": eos.flatten()}


def _round_up(n: int, multiple: int) -> int:
    return multiple * math.ceil(n / multiple)


def _why_not(model, generation_config, model_kwargs: dict, synced_gpus: bool, streamer) -> str | None:
    """Why this call cannot take the compiled loop, or None when it can."""
    if generation_config.num_beams > 1:
        return "beam search"
    if generation_config.return_dict_in_generate:
        return "return_dict_in_generate"
    if streamer is not None or synced_gpus:
        return "a streamer or synced GPUs"
    if not generation_config.use_cache:
        return "use_cache=False"
    if model.model.decoder.mixer_layers:
        return "conv/recurrent decoder mixers (their state is not a static key/value cache)"
    extra = set(model_kwargs) - _HANDLED_MODEL_KWARGS
    if extra:
        return f"extra model inputs {sorted(extra)}"
    if model.training:
        return "the model is in training mode"
    return None


def _padded_source(encoder_hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder output and its mask, padded with masked positions to the next source bucket."""
    batch, length, _ = encoder_hidden.shape
    if attention_mask is None:
        attention_mask = torch.ones(batch, length, dtype=torch.long, device=encoder_hidden.device)
    extra = _round_up(length, SOURCE_BUCKET) - length
    return F.pad(encoder_hidden, (0, 0, 0, extra)), F.pad(attention_mask, (0, extra))


def compiled_decoding(
    model,
    input_ids: torch.LongTensor,
    logits_processor,
    stopping_criteria,
    generation_config,
    synced_gpus: bool = False,
    streamer=None,
    **model_kwargs,
) -> torch.LongTensor:
    """generate()'s decoding loop for greedy search and sampling, with a compiled static-cache step.

    Called by ``generate()`` (``custom_generate``) after it has run the encoder and prepared the decoder prefix
    ``input_ids``, the processors and the stopping criteria; returns the sequences, as ``_sample`` does.
    """
    reason = _why_not(model, generation_config, model_kwargs, synced_gpus, streamer)
    if reason is not None:
        logger.info(f"compiled_decoding does not apply here ({reason}): transformers' own decoding loop runs.")
        if generation_config.num_beams > 1:
            if streamer is not None:  # what transformers says when its own beam search gets a streamer
                raise ValueError("`streamer` cannot be used with beam search (yet!). Make sure that `num_beams` is set to 1.")
            return GenerationMixin._beam_search(
                model, input_ids, logits_processor, stopping_criteria, generation_config, synced_gpus=synced_gpus,
                **model_kwargs,
            )  # fmt: skip
        return GenerationMixin._sample(
            model, input_ids, logits_processor, stopping_criteria, generation_config, synced_gpus=synced_gpus,
            streamer=streamer, **model_kwargs,
        )  # fmt: skip
    config = model.config
    encoder_hidden, source_mask = _padded_source(
        model_kwargs["encoder_outputs"].last_hidden_state, model_kwargs.get("attention_mask")
    )
    target_length = _round_up(generation_config.max_length, TARGET_BUCKET)
    cache = EncoderDecoderCache(
        StaticCache(config=config, max_cache_len=target_length),
        StaticCache(config=config, max_cache_len=encoder_hidden.shape[1]),
    )
    model.model.decoder.grow_positions(target_length)  # a compiled step cannot grow the table
    pad_token_id = generation_config._pad_token_tensor
    has_eos_stopping_criteria = any(hasattr(criteria, "eos_token_id") for criteria in stopping_criteria)
    unfinished = torch.ones(input_ids.shape[0], dtype=torch.long, device=input_ids.device)
    # The prefix step runs eagerly: it allocates the static cache and projects the encoder's keys and values once.
    logits = decode_step(model, input_ids, encoder_hidden, source_mask, cache)
    plan = _greedy_plan(logits_processor, stopping_criteria, generation_config)
    if plan is not None and pad_token_id is not None:
        return _greedy_loop(model, input_ids, logits, encoder_hidden, source_mask, cache, plan, pad_token_id)
    step = _GuardedOnce(compiled_step())
    while True:
        scores = logits_processor(input_ids, logits)
        if generation_config.do_sample:
            next_tokens = torch.multinomial(F.softmax(scores, dim=-1), num_samples=1).squeeze(1)
        else:
            next_tokens = torch.argmax(scores, dim=-1)
        if has_eos_stopping_criteria:  # finished rows get padding, as in transformers' loop
            next_tokens = next_tokens * unfinished + pad_token_id * (1 - unfinished)
        input_ids = torch.cat([input_ids, next_tokens[:, None]], dim=-1)
        unfinished = unfinished & ~stopping_criteria(input_ids, None)
        if unfinished.max() == 0:
            return input_ids
        logits = step(model, next_tokens[:, None], encoder_hidden, source_mask, cache)


def _greedy_loop(model, input_ids, logits, encoder_hidden, source_mask, cache, plan: dict, pad_token_id) -> torch.Tensor:
    """Greedy search with the token choice and the EOS check inside the compiled step (see ``choose_greedy``)."""
    device = input_ids.device
    eos_ids = plan["eos_ids"].to(device)
    eos_mask = torch.isin(torch.arange(logits.shape[-1], device=device), eos_ids)
    min_length = torch.tensor(plan["min_length"], device=device)
    pad = pad_token_id.to(device)
    unfinished = torch.ones(input_ids.shape[0], dtype=torch.long, device=device)
    length = input_ids.shape[1]
    next_tokens, unfinished = choose_greedy(logits, unfinished, torch.tensor(length, device=device), min_length,
                                            eos_mask, eos_ids, pad)  # fmt: skip
    pieces = [input_ids, next_tokens[:, None]]
    length += 1
    step = _GuardedOnce(compiled_greedy_step())
    while length < plan["max_length"] and bool(unfinished.any()):
        next_tokens, unfinished = step(model, next_tokens[:, None], encoder_hidden, source_mask, cache, unfinished,
                                       torch.tensor(length, device=device), min_length, eos_mask, eos_ids, pad)  # fmt: skip
        pieces.append(next_tokens[:, None])
        length += 1
    return torch.cat(pieces, dim=-1)
