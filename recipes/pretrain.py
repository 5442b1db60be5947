r"""Pretrain a Forge encoder-decoder from raw text with T5 span corruption.

text -> tokenizer (trained on the corpus when none is given) -> Forge model (preset or config file,
or continued from --model_name_or_path) -> packed blocks + span-corruption collator -> Trainer ->
Hub-ready folder (safetensors, config with auto_map, code files, tokenizer, generation config,
model card, loss_curve.png).

    python -m recipes.pretrain --train_file ../shared/data/pretrain/train.jsonl \\
        --validation_file ../shared/data/pretrain/validation.jsonl --config_name forge-small \\
        --vocab_size 16384 --block_size 512 --max_steps 2000 --output_dir outputs/forge-small-pretrained
    python -m recipes.pretrain recipes/configs/pretrain_forge_small.yaml      # same, from one file
    torchrun --nproc_per_node 2 -m recipes.pretrain ...                      # multi-process (DDP)

Why span corruption (not BART infilling) is explained in ``recipes/core/pretraining.py``.
"""

from __future__ import annotations

if __name__ == "__main__":  # --help before the imports below load torch (recipes/core/fast_help.py)
    from .core.fast_help import exit_with_help_if_asked

    exit_with_help_if_asked(__spec__)

import json
import logging
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import datasets
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from .core.layout import modeling, module_name, tokenization  # importing modeling registers Forge with the Auto classes
from .privacy.dp import trainer_class
from .core.args import DataArguments, ForgeTrainingArguments, ModelArguments, parse_args
from .core.callbacks import LOSS_CURVE_NAME, build_callbacks
from .core.data import check_not_empty, load_raw_datasets, select_samples
from .core.distributed import gathered_model
from .core.guards import check_corpus_has_text, release_run_lock, save_or_rescue
from .core.mfu import ThroughputCallback, pretraining_flops_per_sample
from .core.safety import (
    check_safetensors_weights, check_tokenizer_folder, redact_argv, redact_mapping, remote_code_allowed,
)
# the recipes' Trainer: under --max_train_minutes its schedule decays over the budget (recipes.core.trainers); the
# safety layer's class alone kept a time-capped pretraining at its peak rate (cosine over --max_steps 1000000)
from .core.trainers import ForgeTrainer
from .core.trainer_utils import check_vocab_matches, start_run, train
from .core.registry import TaskSpec
from .core.pretraining import (
    PackedStream,
    SpanCorruptionCollator,
    SpanCorruptionEpochCallback,
    corrupted_lengths,
    init_embeddings_from_word_vectors,
    pack_dataset,
)
from .publishing.cards import write_model_card
from .publishing.export import save_hub_folder

logger = logging.getLogger(module_name("recipes.pretrain"))  # its name also when run as __main__

TOKENIZER_SUBDIR = "tokenizer"  # where a tokenizer trained by this script is saved (output_dir/tokenizer)
HUB_TASK = "text2text-generation"  # the pipeline a pretrained folder serves (fill in <extra_id_i> spans)

# Pretraining has its own main() (span corruption, packing); the spec gives the card and export its facts.
SPEC = TaskSpec(
    name="pretraining", aliases=("pretrain",), title="Pretraining (span corruption, text-to-text)",
    auto_class="AutoModelForSeq2SeqLM", pipeline_task=HUB_TASK, metric="loss", greater_is_better=False,
    usage=(  # a pretrained checkpoint is used through the model classes, not a task pipeline
        "from transformers import AutoModelForSeq2SeqLM, AutoTokenizer\n\n"
        'model_id = "{model_id}"  # a Hub repo id or a local folder\n'
        "tokenizer = AutoTokenizer.from_pretrained(model_id, trust_remote_code=True)\n"
        "model = AutoModelForSeq2SeqLM.from_pretrained(model_id, trust_remote_code=True)\n"
        'inputs = tokenizer("The quick brown <extra_id_0> jumps over the lazy dog.", return_tensors="pt")\n'
        "output = model.generate(**inputs, max_new_tokens=10)\n"
        "print(tokenizer.decode(output[0]))"
    ),
)


@dataclass
class PretrainModelArguments(ModelArguments):
    """Model and tokenizer options of pretraining (on top of the shared ModelArguments)."""

    config_name: Optional[str] = field(
        default="forge-small",
        metadata={"help": "Forge preset (forge-tiny/small/base/large/xl) or a config.json file/folder. Ignored "
                  "when --model_name_or_path is given."},
    )
    vocab_size: Optional[int] = field(
        default=None,
        metadata={"help": "Vocabulary size of the tokenizer trained on the corpus when --tokenizer_name is not "
                  "given (default: the preset's vocab_size). The model's vocab_size follows the tokenizer."},
    )
    num_sentinels: int = field(
        default=100, metadata={"help": "Sentinel tokens <extra_id_i> of a tokenizer trained here."}
    )
    tokenizer_train_samples: Optional[int] = field(
        default=None, metadata={"help": "Train the tokenizer on at most this many training documents."}
    )
    init_embeddings: Optional[str] = field(
        default=None,
        metadata={"help": "GloVe / word2vec text file (optional 'N D' header). Embedding rows of vocabulary "
                  "tokens found there (Ġ stripped, lower-cased) are initialised from it: zero-padded to d_model, "
                  "or projected with a fixed orthonormal matrix when larger, then scaled to the model's init_std. "
                  "Coverage is logged and written to the model card."},
    )
    attn_implementation: Optional[str] = field(
        default=None, metadata={"help": "Attention kernel: eager, sdpa, flex_attention, flash_attention_2."}
    )


@dataclass
class PretrainDataArguments(DataArguments):
    """Corpus, packing and span-corruption options."""

    text_column: str = field(default="text", metadata={"help": "Column holding the raw text."})
    block_size: int = field(
        default=512,
        metadata={"help": "Tokens per packed block before corruption. Documents are concatenated with </s> "
                  "between them and cut into full blocks; the encoder sees ~0.9x and the decoder ~0.2x this "
                  "length after corruption."},
    )
    drop_last_block: bool = field(
        default=False, metadata={"help": "Drop the final short block of each split (default: keep it, padded)."}
    )
    noise_density: float = field(default=0.15, metadata={"help": "Fraction of tokens masked (T5: 0.15)."})
    mean_noise_span_length: float = field(default=3.0, metadata={"help": "Mean masked span length (T5: 3)."})
    shuffle_buffer_size: int = field(
        default=10_000, metadata={"help": "--streaming only: documents held in the shuffle buffer."}
    )
    scrub_pii: bool = field(
        default=False,
        metadata={"help": "Replace e-mail addresses, phone numbers, URLs, card and ID numbers in every split with "
                  "placeholders such as <EMAIL> before the tokenizer and the model see the text (recipes.privacy.pii; pip "
                  "install 'forge-transformer[privacy]'). Counts by type go to <output_dir>/pii_report.json and the "
                  "model card. Not with --streaming (scrub the files first: python -m recipes.privacy.pii)."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.block_size < 2:
            raise ValueError(f"--block_size must be at least 2, got {self.block_size}.")
        if not 0.0 < self.noise_density < 1.0:
            raise ValueError(f"--noise_density must be in (0, 1), got {self.noise_density}.")
        if self.mean_noise_span_length < 1.0:
            raise ValueError(f"--mean_noise_span_length must be >= 1, got {self.mean_noise_span_length}.")


@dataclass
class PretrainingArguments(ForgeTrainingArguments):
    """TrainingArguments with pretraining defaults (every transformers flag still works)."""

    learning_rate: float = field(default=5e-4, metadata={"help": "Peak AdamW learning rate."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Schedule after warmup: cosine, linear, ..."})
    warmup_steps: float = field(
        default=0.05, metadata={"help": "Warmup: an int number of steps, or a float < 1 = ratio of the total."}
    )
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    logging_steps: float = field(default=10, metadata={"help": "Log the training loss every N steps."})
    eval_strategy: str = field(default="steps", metadata={"help": "When to evaluate: no, steps, epoch."})
    eval_steps: Optional[float] = field(default=200, metadata={"help": "Evaluate every N steps."})
    save_steps: float = field(default=200, metadata={"help": "Checkpoint every N steps."})
    save_total_limit: Optional[int] = field(default=3, metadata={"help": "Keep at most N checkpoints."})
    report_to: None | str | list[str] = field(default="tensorboard", metadata={"help": "Loggers: tensorboard, none, wandb, ..."})
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Must stay False: the span-corruption collator needs the block_id column."},
    )
    include_num_input_tokens_seen: str | bool = field(
        default=False,
        metadata={"help": "Count encoder input tokens in the logs (num_input_tokens_seen). Off by default: the "
                  "Trainer reads the count back from the device every step (a host-device sync that stalls a GPU's "
                  "queue), and a span-corruption block's length is fixed anyway; every training log carries "
                  "corpus_tokens_per_second."},
    )


# What the command line is parsed into (recipes/core/fast_help.py records their --help from here too).
ARGUMENT_TYPES = (PretrainModelArguments, PretrainDataArguments, PretrainingArguments)


# --------------------------------------------------------------------------------------------


def load_or_train_tokenizer(
    model_args: PretrainModelArguments, data_args: PretrainDataArguments, training_args: PretrainingArguments,
    raw_train: Any, resume: Optional[str],
) -> Any:
    """--tokenizer_name / --model_name_or_path / the resumed checkpoint, else train one on the corpus.

    A trained tokenizer is saved to ``output_dir/tokenizer`` by the main process; the others load it.
    """
    source = model_args.tokenizer_name or model_args.model_name_or_path
    if source is None and resume is not None and os.path.isfile(os.path.join(resume, "tokenizer.json")):
        source = resume  # the checkpoint's own tokenizer: retraining could drift with the data
    if source is not None:
        check_tokenizer_folder(source)
        return AutoTokenizer.from_pretrained(
            source, cache_dir=model_args.cache_dir, revision=model_args.model_revision,
            token=model_args.token, trust_remote_code=remote_code_allowed(model_args.trust_remote_code),
        )
    vocab_size = model_args.vocab_size or modeling.ForgeConfig.from_pretrained(model_args.config_name).vocab_size
    folder = os.path.join(training_args.output_dir, TOKENIZER_SUBDIR)
    with training_args.main_process_first(desc="tokenizer training", local=False):
        if training_args.process_index == 0:
            texts = _iter_texts(raw_train, data_args.text_column, model_args.tokenizer_train_samples)
            logger.info("Training a %d-token byte-level BPE tokenizer on the training corpus", vocab_size)
            tok = tokenization.train_tokenizer(
                texts, vocab_size=vocab_size, num_sentinels=model_args.num_sentinels,
                show_progress=not training_args.disable_tqdm,
            )
            type(tok).register_for_auto_class("AutoTokenizer")
            tok.save_pretrained(folder)
        else:
            tok = tokenization.ForgeTokenizerFast.from_pretrained(folder)
    return tok


def _iter_texts(dataset: Any, column: str, limit: Optional[int]):
    if column not in (dataset.column_names or [column]):
        raise ValueError(f"text column {column!r} not found; columns are {dataset.column_names}. Pass --text_column.")
    for i, example in enumerate(dataset):
        if limit is not None and i >= limit:
            return
        yield example[column] or ""


def build_model(
    model_args: PretrainModelArguments, data_args: PretrainDataArguments, tokenizer: Any
) -> modeling.ForgeForConditionalGeneration:
    """A fresh Forge model from the preset/config file, or the --model_name_or_path weights."""
    overrides = model_args.config_kwargs()
    if model_args.attn_implementation:
        overrides["attn_implementation"] = model_args.attn_implementation
    if model_args.model_name_or_path:
        check_safetensors_weights(model_args.model_name_or_path)
        model = AutoModelForSeq2SeqLM.from_pretrained(
            model_args.model_name_or_path, cache_dir=model_args.cache_dir, revision=model_args.model_revision,
            token=model_args.token, trust_remote_code=remote_code_allowed(model_args.trust_remote_code),
            use_safetensors=True, **overrides,
        )
        check_vocab_matches(model, tokenizer)
    else:
        overrides["vocab_size"] = len(tokenizer)
        config = modeling.ForgeConfig.from_pretrained(model_args.config_name, **overrides)
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            if getattr(tokenizer, name) != getattr(config, name):
                raise ValueError(
                    f"tokenizer {name}={getattr(tokenizer, name)} but the config says {getattr(config, name)}; "
                    "Forge tokenizers put <pad> <s> </s> first (ids 0 1 2): retrain the tokenizer with "
                    "tokenization.train."
                )
        if model_args.architecture == "bart":  # the BART control of the same shape (recipes/core/architectures.py)
            from .core.architectures import bart_config_from_forge
            from transformers import BartForConditionalGeneration

            model = BartForConditionalGeneration(bart_config_from_forge(config))
        else:
            model = modeling.ForgeForConditionalGeneration(config)
    input_len, target_len = corrupted_lengths(
        data_args.block_size, data_args.noise_density, data_args.mean_noise_span_length
    )
    longest = max(input_len, target_len)
    if longest > model.config.max_position_embeddings:
        raise ValueError(
            f"--block_size {data_args.block_size} gives encoder inputs of {input_len} tokens, more than the model's "
            f"max_position_embeddings ({model.config.max_position_embeddings}); lower --block_size."
        )
    return model


def prepare_datasets(
    raw: Any, tokenizer: Any, data_args: PretrainDataArguments, training_args: PretrainingArguments
) -> tuple[Any, Any]:
    """Packed train / validation blocks: map-style (in memory) or streamed."""
    if "train" not in raw:
        raise ValueError("No training split: pass --train_file or a --dataset_name with a train split.")
    train_raw, eval_raw = raw["train"], raw.get("validation")
    if data_args.streaming:
        train_raw = train_raw.shuffle(seed=training_args.seed, buffer_size=data_args.shuffle_buffer_size)
        train = PackedStream(train_raw, tokenizer, data_args.text_column, data_args.block_size, data_args.drop_last_block)
        evaluation = None
        if eval_raw is not None:
            # the validation stream is small by assumption: materialise it so eval sees fixed blocks
            docs = datasets.Dataset.from_list(list(eval_raw))
            evaluation = pack_dataset(docs, tokenizer, data_args.text_column, data_args.block_size,
                                      data_args.drop_last_block, eval_noise_epoch=0)
        return train, evaluation
    check_not_empty(train_raw, "train")
    with training_args.main_process_first(desc="tokenizing and packing"):
        train = pack_dataset(train_raw, tokenizer, data_args.text_column, data_args.block_size,
                             data_args.drop_last_block, data_args.preprocessing_num_workers)
        evaluation = None
        if eval_raw is not None:
            check_not_empty(eval_raw, "validation")
            evaluation = pack_dataset(eval_raw, tokenizer, data_args.text_column, data_args.block_size,
                                      data_args.drop_last_block, data_args.preprocessing_num_workers,
                                      eval_noise_epoch=0)
    check_not_empty(train, "train", "after packing", "The corpus has fewer tokens than one block: lower --block_size.")
    return train, evaluation


def perplexity(loss: float) -> float:
    """exp(loss), inf on overflow. On span-corruption targets (sentinels, masked tokens, </s>)."""
    try:
        return math.exp(loss)
    except OverflowError:
        return float("inf")


def main(argv: Optional[list[str]] = None, callbacks: Optional[list[Any]] = None) -> dict[str, float]:
    """Run pretraining; returns the final metrics. ``callbacks`` are added to the Trainer's."""
    model_args, data_args, training_args = parse_args(*ARGUMENT_TYPES, args=argv)
    # logging, seed, output-folder safety (a finished model is never overwritten without
    # --overwrite_output_dir), resume: "last", or a rerun of an interrupted command
    resume = start_run(training_args, model_args, data_args, trains=True)
    if training_args.remove_unused_columns:
        logger.warning("--remove_unused_columns would drop the block_id column the collator needs; turning it off.")
        training_args.remove_unused_columns = False

    started = time.time()

    raw = load_raw_datasets(data_args, cache_dir=model_args.cache_dir, seed=training_args.seed, token=model_args.token)
    raw = select_samples(raw, data_args)
    if "train" in raw:  # an empty or all-blank corpus would train (and export) a model of nothing
        check_corpus_has_text(raw["train"], data_args.text_column, data_args.train_file or data_args.dataset_name or "train")
    pii_reports = None
    if data_args.scrub_pii:
        from .privacy.pii import save_reports, scrub_splits

        with training_args.main_process_first(desc="scrubbing PII"):
            raw, pii_reports = scrub_splits(raw, data_args.text_column, data_args.preprocessing_num_workers)
        if training_args.process_index == 0:
            save_reports(pii_reports, training_args.output_dir)
    tokenizer = load_or_train_tokenizer(model_args, data_args, training_args, raw["train"], resume)
    model = build_model(model_args, data_args, tokenizer)
    embedding_stats = None
    if model_args.init_embeddings:
        embedding_stats = init_embeddings_from_word_vectors(model, tokenizer, model_args.init_embeddings,
                                                            seed=training_args.seed)
    logger.info("Model: %s, %.2fM parameters", model_args.model_name_or_path or model_args.config_name,
                model.num_parameters() / 1e6)

    train_dataset, eval_dataset = prepare_datasets(raw, tokenizer, data_args, training_args)
    if data_args.streaming and training_args.max_steps <= 0:
        raise ValueError("--streaming needs --max_steps (a stream has no length to count epochs with).")
    if eval_dataset is None:
        training_args.eval_strategy = "no"
    collator = SpanCorruptionCollator(
        tokenizer, model=model, noise_density=data_args.noise_density,
        mean_noise_span_length=data_args.mean_noise_span_length, seed=training_args.seed,
        pad_to_multiple_of=data_args.collator_pad_multiple(training_args),
    )
    collator.sentinels_for(data_args.block_size)  # fail now, not at step 1, when sentinels are missing
    # tokens/s and (on a GPU of known peak) MFU in every training log, next to the loss
    throughput = ThroughputCallback(
        pretraining_flops_per_sample(model.config, data_args), data_args.block_size,
        torch.cuda.get_device_name(training_args.device) if training_args.device.type == "cuda" else None,
    )
    callbacks = build_callbacks(training_args, task=HUB_TASK) + [
        SpanCorruptionEpochCallback(collator), throughput
    ] + list(callbacks or [])
    trainer = trainer_class(training_args, "pretraining", base=ForgeTrainer)(  # refuses --dp_epsilon
        model=model, args=training_args, train_dataset=train_dataset, eval_dataset=eval_dataset,
        processing_class=tokenizer, data_collator=collator, callbacks=callbacks,
    )
    from .core.architectures import is_forge_model, save_bart_folder

    if training_args.process_index == 0 and is_forge_model(model):
        type(model.config).register_for_auto_class()  # checkpoints then carry config auto_map + code
        type(model).register_for_auto_class("AutoModelForSeq2SeqLM")
        type(tokenizer).register_for_auto_class("AutoTokenizer")

    num_blocks = len(train_dataset) if hasattr(train_dataset, "__len__") else -1  # -1: streamed
    metrics = train(trainer, resume, num_blocks)  # raises TrainingDivergedError if the NaN guard fired
    if "train_samples_per_second" in metrics:
        # corpus tokens consumed per second (a block = block_size text tokens); the Trainer's own
        # train_tokens_per_second counts encoder inputs after corruption (~0.9x)
        metrics["train_corpus_tokens_per_second"] = metrics["train_samples_per_second"] * data_args.block_size
        # the Trainer's rate counts every process: per GPU it is that over the world size
        train_mfu = throughput.device_mfu(metrics["train_samples_per_second"], training_args.world_size)
        if train_mfu is not None:  # GPUs of known peak only; None on CPU
            metrics["train_mfu"] = train_mfu
        # the same from the first training log to the last: start-up, compilation and warm-up left out
        steady = throughput.steady(training_args)
        for key in ("corpus_tokens_per_second", "mfu"):
            if key in steady:
                metrics[f"train_{key}_steady"] = steady[key]
    if eval_dataset is not None:
        last = next((h for h in reversed(trainer.state.log_history) if "eval_loss" in h), None)
        if last is not None and last.get("step") == trainer.state.global_step:
            eval_metrics = {k: v for k, v in last.items() if k.startswith("eval_")}  # already evaluated here
        else:
            eval_metrics = trainer.evaluate()
        eval_metrics["eval_perplexity"] = perplexity(eval_metrics["eval_loss"])
        metrics.update(eval_metrics)
    trainer.log_metrics("all", metrics)
    trainer.save_metrics("all", metrics)

    final = gathered_model(trainer, model)  # every process takes part (FSDP / ZeRO-3 gather)
    if trainer.is_world_process_zero():
        # overwrite=True: start_run already refused a finished folder unless --overwrite_output_dir
        if is_forge_model(final):
            save_or_rescue(save_hub_folder, final, tokenizer, training_args.output_dir, task=HUB_TASK, overwrite=True)
        else:  # --architecture bart: plain BART weights and config
            save_or_rescue(save_bart_folder, final, tokenizer, training_args.output_dir, task=HUB_TASK)
        _write_card(model, tokenizer, model_args, data_args, training_args, trainer, metrics, embedding_stats,
                    started, argv, pii_reports=pii_reports)
        release_run_lock(training_args.output_dir)
    return metrics


def _write_card(model, tokenizer, model_args, data_args, training_args, trainer, metrics, embedding_stats,
                started, argv, pii_reports=None) -> None:
    """Model card: data, steps, budget, final validation loss / perplexity, command."""
    out = Path(training_args.output_dir)
    world = training_args.world_size
    global_batch = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps * world
    steps = trainer.state.global_step
    budget = (
        f"{steps} optimizer steps x {global_batch} blocks x {data_args.block_size} tokens "
        f"= {steps * global_batch * data_args.block_size:,} tokens; "
        f"{metrics.get('train_runtime', 0) / 60:.1f} min of training ({(time.time() - started) / 60:.1f} min total) "
        f"on {world} process(es), {training_args.device.type}"
    )
    data_name = data_args.dataset_name or ", ".join(str(p) for p in data_args.data_files().values())
    hyper = {
        "config": model_args.model_name_or_path or model_args.config_name,
        "architecture": model_args.architecture,
        "parameters": f"{model.num_parameters() / 1e6:.2f}M",
        "vocab_size": len(tokenizer),
        "objective": f"T5 span corruption (noise_density {data_args.noise_density}, "
                     f"mean_noise_span_length {data_args.mean_noise_span_length})",
        "block_size": data_args.block_size,
        "global_batch_size (blocks)": global_batch,
        "learning_rate": training_args.learning_rate,
        "lr_scheduler_type": str(training_args.lr_scheduler_type),
        "warmup_steps": training_args.warmup_steps,
        "weight_decay": training_args.weight_decay,
        "max_grad_norm": training_args.max_grad_norm,
        "seed": training_args.seed,
        "train_corpus_tokens_per_second": round(metrics.get("train_corpus_tokens_per_second", float("nan")), 1),
    }
    if embedding_stats is not None:
        hyper["init_embeddings"] = (f"{model_args.init_embeddings}: coverage {embedding_stats.coverage:.3f} "
                                    f"({embedding_stats.found} tokens), {embedding_stats.method}")
    card_metrics = {k: v for k, v in metrics.items() if k in ("eval_loss", "eval_perplexity")}
    command = f"python -m {module_name('recipes.pretrain')} " + shlex.join(redact_argv(argv if argv is not None else sys.argv[1:]))
    curve = out / LOSS_CURVE_NAME
    from .privacy.pii import card_section as pii_card_section

    write_model_card(
        out, model_name=out.name, task="pretraining", metrics=card_metrics,
        datasets=data_args.dataset_name, dataset_name=data_name, dataset_split="validation",
        language=None, hyperparameters=hyper, training_budget=budget, command=command,
        loss_curve=curve if curve.is_file() else None,
        extra_sections=[pii_card_section(pii_reports)] if pii_reports else None,
        summary=("A Forge encoder-decoder pretrained from scratch with T5-style span corruption. The validation "
                 "loss and perplexity are measured on span-corruption targets (sentinels, masked spans, </s>) of "
                 "the packed validation blocks with fixed noise masks."),
    )
    with open(out / "pretraining_summary.json", "w", encoding="utf-8") as f:
        json.dump({"metrics": metrics, "budget": budget, "hyperparameters": redact_mapping(hyper)}, f, indent=2, default=str)


if __name__ == "__main__":
    from .core.cli import run_cli

    run_cli(main)
