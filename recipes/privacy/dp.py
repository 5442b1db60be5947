"""Differentially private fine-tuning (DP-SGD) through the real Hugging Face Trainer, with Opacus.

DP-SGD (Abadi et al., 2016) bounds what a trained model can reveal about any one training example: each
example's gradient is clipped to ``--dp_max_grad_norm``, Gaussian noise is added to the sum, and batches are
drawn by Poisson sampling, so that a privacy accountant can state an (epsilon, delta) guarantee for the whole
run. Opacus provides every piece: per-example gradients (``GradSampleModule`` hooks on ``nn.Linear``,
``nn.Embedding``, ``nn.LayerNorm``, ``nn.RMSNorm``), clipping + noise (``DPOptimizer``), the Poisson batch
sampler and the accountants. :class:`DPTrainer` wires them into ``transformers.Trainer`` at the three places
the Trainer documents for overriding (``get_train_dataloader``, ``create_optimizer``, ``training_step``), so
evaluation, checkpoints, callbacks, logging and saving stay the Trainer's own.

What it refuses, instead of training without the guarantee: gradient accumulation, more than one process or
GPU, FSDP / DeepSpeed, fp16 / bf16, gradient checkpointing, torch.compile, modules Opacus cannot compute
per-example gradients for (e.g. learned position embeddings, which are added once for the whole batch),
resuming from a checkpoint without a privacy ledger, and tasks whose loss mixes examples.

Usage (``recipes/sentiment.py`` and ``recipes/qa.py`` do this)::

    trainer_cls = trainer_class(training_args, "text-classification", base=ForgeTrainer)  # base when DP is off
    trainer = trainer_cls(model=model, args=training_args, ...)
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
from functools import lru_cache
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from transformers import Trainer, TrainerCallback

logger = logging.getLogger(__name__)

ACCOUNTANT_FILE = "dp_accountant.json"
METRIC_PREFIX = "train_dp_"
# Tasks whose loss is a mean of independent per-example terms, where one training row is one example.
SUPPORTED_TASKS = ("text-classification", "question-answering")
_UNSUPPORTED_TASK_REASONS = {
    "semantic-role-labeling": (
        "its loss is averaged over the tokens of the whole batch (so one example's gradient depends on the others' "
        "lengths) and one sentence yields one training row per predicate (so a row is not a person's record)"
    ),
}


class DPConfigError(ValueError):
    """A configuration DP-SGD cannot make private; the message names the setting and the fix."""


@dataclass
class DPArguments:
    """Differentially private training (DP-SGD with Opacus). Off unless ``--dp_epsilon`` is given."""

    dp_epsilon: Optional[float] = field(
        default=None,
        metadata={
            "help": "Train with differential privacy (DP-SGD, Opacus) to this privacy budget epsilon for the whole "
            "run (e.g. 3 or 8; smaller is more private and less accurate). The noise is calibrated to it from the "
            "planned number of steps; the spent epsilon is reported as train_dp_epsilon and in the model card."
        },
    )
    dp_delta: Optional[float] = field(
        default=None,
        metadata={"help": "DP delta (probability the epsilon bound fails). Default: 1 / number of training examples."},
    )
    dp_max_grad_norm: float = field(
        default=1.0,
        metadata={"help": "DP-SGD clipping bound: each example's gradient is scaled down to at most this L2 norm."},
    )
    dp_micro_batch_size: int = field(
        default=32,
        metadata={
            "help": "DP-SGD: rows per forward/backward pass inside each Poisson batch. The batch is sorted by length "
            "and cut into passes of this many rows, each padded only to its own longest row; every example's "
            "clipped gradient, their sum and the privacy guarantee are the same as in one pass. Lower it to save "
            "memory; 0 = the whole batch in one pass."
        },
    )
    dp_accountant: str = field(
        default="rdp",
        metadata={"help": "Privacy accountant: 'rdp' (Renyi DP, the common choice) or 'prv' (tighter, numerical).",
                  "choices": ["rdp", "prv"]},
    )

    @property
    def dp_enabled(self) -> bool:
        return self.dp_epsilon is not None


def trainer_class(
    training_args: Any, task: str, num_examples: Optional[int] = None, num_rows: Optional[int] = None,
    base: type = Trainer,
) -> type:
    """``base`` (a ``Trainer`` class), made private with :class:`DPTrainerMixin` when ``--dp_epsilon`` is set
    (after checking ``task`` can be trained privately).

    ``num_examples`` / ``num_rows``: the training examples and the feature rows made from them (QA splits long
    contexts into several windows). DP protects rows; a refusal is raised when they differ, since the guarantee
    would then not be per example.
    """
    if getattr(training_args, "dp_epsilon", None) is None:
        return base
    if task not in SUPPORTED_TASKS:
        reason = _UNSUPPORTED_TASK_REASONS.get(task, "it is not one of the encoder recipes checked for DP")
        raise DPConfigError(
            f"--dp_epsilon: differentially private training is not supported for {task}: {reason}. "
            f"Supported: {', '.join(SUPPORTED_TASKS)}. Drop --dp_epsilon to train without privacy."
        )
    if num_examples is not None and num_rows is not None and num_rows > num_examples:
        raise DPConfigError(
            f"--dp_epsilon: the {num_examples} training examples became {num_rows} feature rows (long contexts are "
            "split into windows), so DP-SGD would protect windows, not examples. Raise --max_seq_length (or shorten "
            "the contexts) until every example fits one window, or drop --dp_epsilon."
        )
    return private_trainer_class(base)


@lru_cache(maxsize=None)
def private_trainer_class(base: type) -> type:
    """``DPTrainerMixin`` on top of ``base`` (one class per base, so isinstance checks and pickling stay stable)."""
    if issubclass(base, DPTrainerMixin):
        return base
    return type(f"DP{base.__name__}", (DPTrainerMixin, base), {"__doc__": DPTrainerMixin.__doc__,
                                                               "__module__": __name__})


def check_dp_config(args: Any, model: torch.nn.Module) -> None:
    """Raise :class:`DPConfigError` for every setting under which DP-SGD would not hold or not run correctly."""
    try:
        import opacus  # noqa: F401
    except ImportError as error:
        raise DPConfigError(
            "--dp_epsilon needs Opacus: pip install 'forge-transformer[privacy]' (or pip install opacus)."
        ) from error
    problems = []
    if args.dp_epsilon is None or not args.dp_epsilon > 0:
        problems.append(f"--dp_epsilon must be > 0, got {args.dp_epsilon}")
    if args.dp_delta is not None and not 0 < args.dp_delta < 1:
        problems.append(f"--dp_delta must be in (0, 1), got {args.dp_delta}")
    if not args.dp_max_grad_norm > 0:
        problems.append(f"--dp_max_grad_norm must be > 0, got {args.dp_max_grad_norm}")
    if getattr(args, "dp_micro_batch_size", 0) < 0:
        problems.append(f"--dp_micro_batch_size must be >= 0 (0: one pass per batch), got {args.dp_micro_batch_size}")
    if args.dp_accountant not in ("rdp", "prv"):
        problems.append(f"--dp_accountant must be rdp or prv, got {args.dp_accountant!r}")
    if args.gradient_accumulation_steps != 1:
        problems.append(
            "--gradient_accumulation_steps > 1 is not supported: Poisson-sampled micro-batches do not add up to one "
            "Poisson batch. Set it to 1 and raise --per_device_train_batch_size (the expected batch size)"
        )
    if args.world_size > 1 or args.n_gpu > 1:
        problems.append("more than one process or GPU is not supported: run on one device (CUDA_VISIBLE_DEVICES=0)")
    if args.fsdp or args.deepspeed:
        problems.append("FSDP and DeepSpeed are not supported: Opacus needs the whole model's per-example gradients")
    if args.fp16 or args.bf16:
        problems.append("--fp16 / --bf16 are not supported (per-example gradients and clipping are checked in fp32 only)")
    if args.gradient_checkpointing:
        problems.append("--gradient_checkpointing is not supported (recomputed forwards would record activations twice)")
    if args.torch_compile:
        problems.append("--torch_compile is not supported (Opacus' hooks need the eager modules)")
    problems += unsupported_modules(model)
    if problems:
        raise DPConfigError(
            "Differentially private training (--dp_epsilon) cannot run with this configuration:\n- " + "\n- ".join(problems)
            + "\nFix the settings above, or drop --dp_epsilon to train without privacy."
        )


def register_forge_grad_samplers() -> None:
    """Teach Opacus the one Forge module with trainable weights it has no rule for: the scaled token embedding.

    ``ForgeScaledEmbedding`` is an ``nn.Embedding`` whose output is multiplied by ``embed_scale`` (sqrt(d_model)
    under ``scale_embedding``). Opacus matches rules by exact type, so the subclass needs its own: the gradient of
    ``scale * lookup(weight)`` is Opacus' embedding rule applied to ``scale * backprops``.
    """
    from opacus import GradSampleModule
    from opacus.grad_sample.embedding import compute_embedding_grad_sample
    from opacus.grad_sample.utils import register_grad_sampler

    from ..core.layout import modeling

    ForgeScaledEmbedding = modeling.modeling_forge.ForgeScaledEmbedding

    if ForgeScaledEmbedding in GradSampleModule.GRAD_SAMPLERS:
        return

    @register_grad_sampler(ForgeScaledEmbedding)
    def _scaled_embedding_grad_sample(layer, activations, backprops):
        return compute_embedding_grad_sample(layer, activations, backprops * layer.embed_scale)


def forge_grad_sample_module(model: torch.nn.Module) -> Any:
    """Opacus' GradSampleModule over ``model``, visiting each module once.

    Opacus walks modules parent by parent, so a module registered under two parents gets two hooks and its
    per-example gradient is added twice. Forge's token embedding is such a module (``shared`` is also
    ``encoder.embed_tokens`` / ``decoder.embed_tokens``), so the walk below is Opacus' own with a visited set.
    """
    from opacus import GradSampleModule
    from opacus.layers.dp_rnn import DPGRU, DPLSTM, DPRNN
    from opacus.utils.module_utils import has_trainable_params

    class _OnceGradSampleModule(GradSampleModule):
        def iterate_submodules(self, module: torch.nn.Module):
            seen: set[int] = set()

            def walk(current: torch.nn.Module):
                if id(current) in seen:
                    return
                seen.add(id(current))
                trainable = has_trainable_params(current)
                if trainable:
                    yield current
                    if type(current) not in self.GRAD_SAMPLERS and type(current) not in (DPRNN, DPLSTM, DPGRU):
                        return  # handled by functorch as a whole, as in Opacus
                for child in current.children():
                    yield from walk(child)

            yield from walk(module)

    return _OnceGradSampleModule(model, batch_first=True, loss_reduction="mean")


def unsupported_modules(model: torch.nn.Module) -> list[str]:
    """Problems Opacus would have with ``model``: its validator's errors, and trainable modules without an exact
    per-example gradient rule.

    Opacus falls back to functorch for module types it has no rule for; that fallback assumes the module's input
    carries the batch dimension. Forge's learned position table does not (it is indexed by position and added to
    every example), so such modules are refused here rather than left to fail, or worse, mis-clip.
    """
    from opacus import GradSampleModule
    from opacus.validators import ModuleValidator

    register_forge_grad_samplers()
    # Opacus' validator also reports a model in eval mode, which is how ``from_pretrained`` returns every model:
    # that is not a configuration problem (the Trainer switches to train mode), so validate in train mode.
    was_training = model.training
    model.train()
    try:
        problems = [f"Opacus: {error}" for error in ModuleValidator.validate(model, strict=False)]
    finally:
        model.train(was_training)
    rules = GradSampleModule.GRAD_SAMPLERS
    for name, module in model.named_modules():
        if any(p.requires_grad for p in module.parameters(recurse=False)) and type(module) not in rules:
            hint = (
                " (use position_embedding_type='sinusoidal' or 'rotary')"
                if type(module).__name__ == "ForgeLearnedPositions"
                else " (freeze it with requires_grad_(False), or replace it with a supported layer)"
            )
            problems.append(f"module {name or '<model>'} ({type(module).__name__}) has no per-example gradient rule in Opacus{hint}")
    return problems


def length_sorted_passes(inputs: dict[str, Any], rows_per_pass: int, multiple_of: int = 8) -> list[dict[str, Any]]:
    """``inputs`` (one padded batch) as passes of at most ``rows_per_pass`` rows, sorted by length, each with the
    trailing columns that are padding in all its rows cut off (kept to a multiple of ``multiple_of``).

    Why: a Poisson batch is a uniform draw, so almost every batch holds one long row and the collator pads all rows
    to it; SST-2's rows are mostly short, so one pass computes several times the tokens that exist. Only trailing
    all-padding columns are cut, so the remaining positions and masks of every row are unchanged (left padding
    simply gains nothing). Without an ``attention_mask``, or with ``rows_per_pass`` 0, the batch is one pass.
    """
    mask = inputs.get("attention_mask")
    rows = mask.shape[0] if isinstance(mask, torch.Tensor) else 0
    if not rows_per_pass or rows <= rows_per_pass or mask.dim() != 2:
        return [inputs]
    width = mask.shape[1]
    order = torch.argsort(mask.sum(dim=1), stable=True)
    passes = []
    for start in range(0, rows, rows_per_pass):
        index = order[start : start + rows_per_pass]
        used = mask[index].any(dim=0).nonzero()
        last = int(used.max()) + 1 if len(used) else 1  # columns up to the last real token of any row here
        keep = min(width, math.ceil(last / multiple_of) * multiple_of)
        part = {}
        for key, value in inputs.items():
            if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == rows:
                value = value[index]
                if value.dim() >= 2 and value.shape[1] == width:
                    value = value[:, :keep]
            part[key] = value
        passes.append(part)
    return passes


def secret_generator(device: torch.device) -> torch.Generator:
    """A generator seeded from the operating system's entropy, not from ``--seed``.

    The guarantee assumes the noise and the batch draws are unknown: with the published ``--seed`` (it is in the
    model card) someone could replay training with and without a record and compare. So DP runs are not
    reproducible from ``--seed``, which still fixes the initialisation. (Opacus' ``secure_mode`` would also need
    a cryptographic generator, torchcsprng, which is not used.)
    """
    generator = torch.Generator(device=device)
    generator.manual_seed(secrets.randbits(63))
    return generator


class _EmptyBatchCollator:
    """Poisson sampling can draw an empty batch; the Trainer still needs a batch with the usual keys (zero rows)."""

    def __init__(self, collate: Any, template: dict[str, torch.Tensor]):
        self.collate = collate
        self.template = template

    def __call__(self, rows: list) -> dict[str, torch.Tensor]:
        return self.collate(rows) if rows else dict(self.template)


def _dp_optimizer_class():
    from opacus.optimizers import DPOptimizer

    class ForgeDPOptimizer(DPOptimizer):
        """Opacus' DPOptimizer that refuses a non-private step and clears per-example gradients after each step.

        The Trainer clears gradients with ``model.zero_grad()``, which does not know about ``grad_sample``;
        and Opacus' own ``pre_step`` would step without noise if no per-example gradient had been recorded.
        """

        def pre_step(self, closure=None):
            missing = [i for i, p in enumerate(self.params) if getattr(p, "grad_sample", None) is None]
            if missing:
                raise RuntimeError(
                    f"DP-SGD: {len(missing)} trainable parameters have no per-example gradient; refusing a "
                    "non-private optimizer step. (Was the model called outside the Trainer's training_step?)"
                )
            return super().pre_step(closure)

        def step(self, closure=None):
            result = super().step(closure)
            for p in self.params:
                p.grad_sample = None
                if not self._is_last_step_skipped:  # a skipped step keeps the clipped sum of the batch so far
                    p.summed_grad = None
            return result

    return ForgeDPOptimizer


class DPTrainerMixin:
    """A ``transformers.Trainer`` (subclass) with DP-SGD: Poisson batches, per-example clipping, calibrated noise, accounting.

    Reads ``dp_epsilon``, ``dp_delta``, ``dp_max_grad_norm`` and ``dp_accountant`` from ``args`` (see
    :class:`DPArguments`). After ``train()`` the metrics hold ``train_dp_epsilon`` (spent, from the accountant),
    ``train_dp_delta``, ``train_dp_noise_multiplier``, ``train_dp_sample_rate``, ``train_dp_max_grad_norm`` and
    ``train_dp_steps``; :attr:`dp_report` holds the same for the model card.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        check_dp_config(self.args, self.model)
        if self.args.max_grad_norm:
            # The Trainer's clip of the summed gradient is replaced by Opacus' per-example clip; the Trainer would
            # also log the norm of the non-private gradient, a leak, so its grad_norm logging is off too.
            logger.info("DP-SGD: --max_grad_norm %s is replaced by per-example clipping at --dp_max_grad_norm %s.",
                        self.args.max_grad_norm, self.args.dp_max_grad_norm)
            self.args.max_grad_norm = 0.0
        self.dp_report: dict[str, float] = {}
        self._accountant = None
        self._grad_sample_module = None
        self._sample_rate: Optional[float] = None
        self._num_rows: Optional[int] = None
        self._resume_from: Optional[str] = None
        self.add_callback(_AccountantCheckpointCallback(self))

    # -- data: Poisson sampling ------------------------------------------------------------------------------
    def get_train_dataloader(self) -> torch.utils.data.DataLoader:
        """Batches by Poisson sampling: each row joins each batch independently with rate batch_size / rows."""
        import datasets
        from opacus.utils.uniform_sampler import UniformWithReplacementSampler

        if self.train_dataset is None:
            raise ValueError("Trainer: training requires a train_dataset.")
        dataset = self.train_dataset
        if isinstance(dataset, torch.utils.data.IterableDataset):
            raise DPConfigError("--dp_epsilon needs a map-style training set (Poisson sampling draws rows by index); "
                                "drop --streaming.")
        if isinstance(dataset, datasets.Dataset):
            dataset = self._remove_unused_columns(dataset, description="Training")
        rows = len(dataset)
        batch = self._train_batch_size
        if batch >= rows:
            raise DPConfigError(f"--per_device_train_batch_size {batch} must be smaller than the {rows} training rows "
                                "for Poisson sampling; lower it.")
        self._num_rows, self._sample_rate = rows, batch / rows
        sampler = UniformWithReplacementSampler(
            num_samples=rows, sample_rate=self._sample_rate, generator=secret_generator(torch.device("cpu"))
        )
        template = {k: v[:0] for k, v in self.data_collator([dataset[0]]).items()}
        # Not passed through accelerator.prepare: one process only (checked), and accelerate's batch-sampler
        # wrapper assumes fixed-size batches. The Trainer moves each batch to the device itself.
        return torch.utils.data.DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=_EmptyBatchCollator(self.data_collator, template),
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
        )

    # -- optimizer: per-example clipping + noise, and the accountant -----------------------------------------
    def create_optimizer(self, model: Optional[torch.nn.Module] = None) -> torch.optim.Optimizer:
        from opacus import GradSampleModule
        from opacus.accountants import create_accountant
        from opacus.accountants.utils import get_noise_multiplier

        optimizer = super().create_optimizer(model)
        if getattr(optimizer, "original_optimizer", None) is not None:  # already private (a second train() call)
            return optimizer
        if self._sample_rate is None:
            self.get_train_dataloader()  # sets the sample rate; the Trainer builds its loader before the optimizer
        steps = self._planned_steps()
        delta = self.args.dp_delta if self.args.dp_delta is not None else 1.0 / self._num_rows
        noise = get_noise_multiplier(
            target_epsilon=self.args.dp_epsilon, target_delta=delta, sample_rate=self._sample_rate, steps=steps,
            accountant=self.args.dp_accountant,
        )
        # Hooks on the model's own modules (the wrapper is kept only to remove them later): the Trainer keeps
        # training, saving and evaluating the unwrapped model.
        register_forge_grad_samplers()
        self._grad_sample_module = forge_grad_sample_module(self.model)
        self.optimizer = _dp_optimizer_class()(
            optimizer, noise_multiplier=noise, max_grad_norm=self.args.dp_max_grad_norm,
            expected_batch_size=self._train_batch_size, loss_reduction="mean",
            generator=secret_generator(self.args.device),
        )
        self._accountant = create_accountant(self.args.dp_accountant)
        self._restore_ledger()
        self.optimizer.attach_step_hook(self._accountant.get_optimizer_hook_fn(sample_rate=self._sample_rate))
        self.dp_report = {"delta": delta, "noise_multiplier": noise, "sample_rate": self._sample_rate,
                          "max_grad_norm": self.args.dp_max_grad_norm, "target_epsilon": self.args.dp_epsilon,
                          "planned_steps": steps}
        logger.info("DP-SGD: epsilon %.3g, delta %.3g, %d steps at sample rate %.4g -> noise multiplier %.4g.",
                    self.args.dp_epsilon, delta, steps, self._sample_rate, noise)
        return self.optimizer

    def _planned_steps(self) -> int:
        """The optimizer steps the Trainer will take (its own formula), for calibrating the noise."""
        if self.args.max_steps > 0:
            return self.args.max_steps
        return max(1, math.ceil(self.args.num_train_epochs * int(1 / self._sample_rate)))

    # -- one step: length-sorted passes; an empty Poisson batch still takes a (noise-only) step ---------------
    def training_step(self, model: torch.nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        first = next(iter(inputs.values()))
        if isinstance(first, torch.Tensor) and first.shape[0] == 0:
            for p in self.model.parameters():
                if p.requires_grad:
                    p.grad_sample = torch.zeros((0, *p.shape), device=p.device, dtype=p.dtype)
            return torch.zeros((), device=self.args.device)
        passes = length_sorted_passes(inputs, self.args.dp_micro_batch_size)
        if len(passes) == 1:
            return super().training_step(model, inputs, num_items_in_batch)
        # Each pass's examples are clipped and added to the running sum by a skipped optimizer step (Opacus'
        # virtual steps, as in its BatchMemoryManager); the Trainer's own optimizer.step() after the last pass
        # clips that pass, adds the noise once and updates. Per-example gradients do not depend on which
        # examples share a pass, so the sum, the noise and the accounting are those of the one Poisson batch.
        total, rows = 0.0, first.shape[0]
        for i, part in enumerate(passes):
            loss = super().training_step(model, part, None)
            total = total + loss * part["attention_mask"].shape[0]  # the pass's mean loss, weighted by its rows
            if i < len(passes) - 1:
                optimizer = getattr(self.optimizer, "optimizer", self.optimizer)  # accelerate's wrapper, if any
                optimizer.signal_skip_step(do_skip=True)
                optimizer.step()
        return total / rows

    def _get_grad_norm(self, model: torch.nn.Module, grad_norm: Any = None) -> None:
        # The Trainer would log the norm of the summed, unclipped, noiseless gradient: not private. Nothing is logged.
        return None

    # -- train: ledger on resume, the spent epsilon in the metrics -------------------------------------------
    def train(self, resume_from_checkpoint: Optional[str | bool] = None, **kwargs: Any) -> Any:
        if resume_from_checkpoint is True:
            from transformers.trainer_utils import get_last_checkpoint

            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
        self._resume_from = resume_from_checkpoint
        try:
            output = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        finally:
            if self._grad_sample_module is not None:
                self._grad_sample_module._close()  # remove the hooks and per-example gradient buffers
                self._grad_sample_module = None
        epsilon = self.spent_epsilon()
        self.dp_report.update(epsilon=epsilon, steps=self.ledger_steps())
        output.metrics.update({
            f"{METRIC_PREFIX}epsilon": epsilon, f"{METRIC_PREFIX}delta": self.dp_report["delta"],
            f"{METRIC_PREFIX}noise_multiplier": self.dp_report["noise_multiplier"],
            f"{METRIC_PREFIX}sample_rate": self.dp_report["sample_rate"],
            f"{METRIC_PREFIX}max_grad_norm": self.dp_report["max_grad_norm"], f"{METRIC_PREFIX}steps": self.ledger_steps(),
        })
        if epsilon > self.args.dp_epsilon * 1.01:
            logger.warning("DP-SGD: spent epsilon %.3g exceeds the target %.3g (more steps ran than planned).",
                           epsilon, self.args.dp_epsilon)
        return output

    def spent_epsilon(self) -> float:
        """Epsilon spent so far at the run's delta, from the accountant (0.0 before the first step)."""
        if self._accountant is None or not self._accountant.history:
            return 0.0
        return float(self._accountant.get_epsilon(delta=self.dp_report["delta"]))

    def ledger_steps(self) -> int:
        return int(sum(entry[2] for entry in self._accountant.history)) if self._accountant else 0

    def _restore_ledger(self) -> None:
        """On resume, continue the accountant's history from the checkpoint; a checkpoint without one is refused."""
        if not self._resume_from:
            return
        path = Path(self._resume_from) / ACCOUNTANT_FILE
        if not path.is_file():
            raise DPConfigError(
                f"Resuming from {self._resume_from}, which has no {ACCOUNTANT_FILE}: it was not trained with DP-SGD "
                "(or by an older Forge), so the privacy already spent is unknown. Start a new run "
                "(--overwrite_output_dir) instead."
            )
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved["accountant"] != self.args.dp_accountant:
            raise DPConfigError(f"{path}: written with --dp_accountant {saved['accountant']}, resumed with "
                                f"{self.args.dp_accountant}; resume with the same settings.")
        self._accountant.history = [tuple(entry) for entry in saved["history"]]


class _AccountantCheckpointCallback(TrainerCallback):
    """Writes the accountant's history into each checkpoint, so a resumed run counts the privacy already spent."""

    def __init__(self, trainer: DPTrainerMixin):
        self.trainer = trainer

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        accountant = self.trainer._accountant
        if accountant is None or not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            record = {"accountant": args.dp_accountant, "history": [list(entry) for entry in accountant.history],
                      "epsilon": self.trainer.spent_epsilon(), "delta": self.trainer.dp_report.get("delta")}
            tmp = folder / f".{ACCOUNTANT_FILE}.tmp"
            tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
            os.replace(tmp, folder / ACCOUNTANT_FILE)


class DPTrainer(DPTrainerMixin, Trainer):
    """``transformers.Trainer`` with DP-SGD (see :class:`DPTrainerMixin`)."""


def card_section(train_metrics: Optional[dict[str, Any]]) -> Optional[tuple[str, str]]:
    """The model card's "Differential privacy" section (title, markdown) for a DP run's train metrics, else None."""
    if not train_metrics or f"{METRIC_PREFIX}epsilon" not in train_metrics:
        return None
    m = {k[len(METRIC_PREFIX):]: v for k, v in train_metrics.items() if k.startswith(METRIC_PREFIX)}
    body = (
        f"Fine-tuned with DP-SGD (Opacus): per-example gradients clipped to L2 norm {m['max_grad_norm']:g}, Gaussian "
        f"noise multiplier {m['noise_multiplier']:.4g}, Poisson sampling rate {m['sample_rate']:.4g}, "
        f"{int(m['steps'])} steps. The privacy accountant's spent budget is **epsilon = {m['epsilon']:.3g} at delta = "
        f"{m['delta']:.3g}**, for the fine-tuning data only, with one training row as the unit of privacy.\n\n"
        "Not covered: the pretraining data of the starting checkpoint, the validation data used for evaluation or "
        "model selection (early stopping), hyperparameter search, and the training loss in the logs."
    )
    return ("Differential privacy", body)
