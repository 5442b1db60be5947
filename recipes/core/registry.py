"""The task registry: what Forge knows about each task, in one :class:`TaskSpec` per task.

Every recipe module ``recipes/<task>.py`` defines ``SPEC = TaskSpec(...)`` next to whatever is truly
specific to its task; :func:`task_specs` finds them by importing the modules of the ``recipes`` package,
so adding a task is one new recipe file (plus its tests and sample data). The other places that used to
keep their own per-task tables read from here: the generic driver (:mod:`recipes.core.driver`), data
validation (:func:`recipes.core.tasks.validate_for_task`), the main job, model cards, Hub-folder export
and the upload pre-flight.

One direction only: ``modeling/`` keeps the facts a model folder needs at load time, in a Python where
Forge is not installed (``modeling.AUTO_CLASSES``: Auto class -> Forge head;
``modeling.pipeline_forge.FORGE_PIPELINES``: pipeline task -> pipeline class), because those files are
copied flat into every folder and may import nothing from ``recipes/``. A spec names those facts by
string (``auto_class="AutoModelForQuestionAnswering"``, ``pipeline_task="question-answering"``) and
``tests/test_registry.py`` checks that each name exists there.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import pkgutil
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Optional

from .layout import module_name

__all__ = [
    "DataColumn",
    "TaskSpec",
    "get_task",
    "main_job_tasks",
    "pipeline_usage",
    "task_specs",
]

_PIPELINE_USAGE_HEAD = 'from transformers import pipeline\n\nmodel_id = "{model_id}"  # a Hub repo id or a local folder\n'


def pipeline_usage(body: str) -> str:
    """A card usage snippet: the import and ``model_id`` line every pipeline snippet starts with, then ``body``."""
    return _PIPELINE_USAGE_HEAD + body


class DataColumn(NamedTuple):
    """One column of a task's data, named by the data-arguments field that holds its name (``"label_column"``).

    ``kind`` is a :class:`recipes.core.data.ColumnSpec` value kind ("text", "label", "int", ...); a ``target``
    column may be absent from the test split. A field whose value is None (an unused optional column) is skipped.
    """

    flag: str
    kind: str
    target: bool = False


@dataclass(frozen=True)
class TaskSpec:
    """Everything the project knows about one task.

    Recipe-level facts (data, metric, driver steps) and the publishing facts (card text, pipeline tag,
    the sample input the upload pre-flight feeds the pipeline) sit together, so no other module keeps a
    per-task table.
    """

    name: str  # the task's name in the main job and its recipe module: "qa"
    title: str  # card title: "Extractive question answering"
    auto_class: str  # the transformers Auto class that loads its head (a key of modeling.AUTO_CLASSES)
    pipeline_task: str  # what pipeline(TASK, model=folder) is called with; save_hub_folder's task
    aliases: tuple[str, ...] = ()  # other names that find this spec ("question-answering")
    hub_pipeline_tag: Optional[str] = None  # the Hub's pipeline tag, when it differs from pipeline_task
    data_columns: tuple[DataColumn, ...] = ()  # the columns validation requires (see column_specs)
    metric: Optional[str] = None  # the task metric, without "eval_": early stopping, best model, main-job table
    greater_is_better: bool = True  # the metric's direction
    # -- fine-tuning (None for tasks without a recipe of their own) --
    data_args_class: Optional[type] = None
    recipe: Optional[type] = None  # a recipes.core.driver.TaskRecipe subclass: the steps that differ
    # (data_args, split, columns present) -> ColumnSpecs, for data whose columns depend on the file; default:
    # data_columns
    column_specs: Optional[Callable[[Any, str, Sequence[str]], list]] = None
    check_rows: Optional[Callable[[Mapping[str, Any], str, Any], None]] = None  # cross-field row checks per split
    # (train split, data_args) -> (each row's target, the flag naming it), or None when the split has no target
    # column: the training-target guard refuses a split whose targets are all empty (recipes.core.guards)
    training_targets: Optional[Callable[[Any, Any], Optional[tuple[Iterable[Any], str]]]] = None
    warn_empty_targets: bool = False  # also warn when only some targets are empty (text-to-text tasks)
    # the recipe's own TrainingArguments defaults, (flag name, value) pairs measured in bench/results/ (README)
    training_defaults: tuple[tuple[str, Any], ...] = ()
    # the same for a run that fine-tunes --model_name_or_path (a pretrained model), where they differ; flags win
    pretrained_training_defaults: tuple[tuple[str, Any], ...] = ()
    # the same for the task's data arguments (``data_args_class``): e.g. summarization's generation settings
    data_defaults: tuple[tuple[str, Any], ...] = ()
    # ForgeConfig fields of a model built from a preset name (--config_name forge-small: training from scratch),
    # measured in bench/results/ (README); --config_overrides wins, a config folder or a pretrained model is untouched.
    # A value may be a function of the preset's fields (--config_overrides applied), e.g. a list with one mixer per layer
    preset_config_defaults: tuple[tuple[str, Any], ...] = ()
    # -- publishing --
    usage: str = ""  # the card's usage snippet; "{model_id}" is replaced by the repo id / folder
    sample_input: Any = None  # what the upload pre-flight passes the pipeline (a dict: keyword arguments)
    # -- the main job --
    main_job_order: Optional[int] = None  # position among the main job's tasks; None: not in the main job
    main_job_flags: tuple[str, ...] = ()  # extra recipe flags the main job passes
    main_job_data_flags: Optional[Callable[[Path], list[str]]] = None  # flags that depend on the training file
    demo_call: Optional[Callable[[Mapping[str, Any]], tuple[tuple, dict]]] = None  # validation row -> pipeline args
    module: str = ""  # set by the registry: the module that defines the spec ("recipes.qa")
    keys: tuple[str, ...] = field(default=(), repr=False)  # set by the registry: name + aliases

    @property
    def pipeline_tag(self) -> str:
        """The Hub pipeline tag (SRL is token classification on the Hub)."""
        return self.hub_pipeline_tag or self.pipeline_task

    @property
    def eval_metric(self) -> Optional[str]:
        """The metric as the Trainer reports it on the validation split ("eval_f1")."""
        return None if self.metric is None else f"eval_{self.metric}"


# Tasks a saved folder can serve that no recipe trains (cards and export know them; tests build such folders).
_GENERIC_SPECS = (
    TaskSpec(
        name="token-classification",
        title="Token classification",
        auto_class="AutoModelForTokenClassification",
        pipeline_task="token-classification",
        usage=pipeline_usage(
            'tagger = pipeline("token-classification", model=model_id, trust_remote_code=True, '
            'aggregation_strategy="simple")\n'
            'print(tagger("Ada Lovelace was born in London ."))'
        ),
        sample_input="Ada Lovelace was born in London .",
    ),
    TaskSpec(
        name="text2text-generation",
        title="Text-to-text generation",
        auto_class="AutoModelForSeq2SeqLM",
        pipeline_task="text2text-generation",
        usage=pipeline_usage(
            'generator = pipeline("text2text-generation", model=model_id, trust_remote_code=True)\n'
            'print(generator("The quick brown <extra_id_0> jumps over the lazy dog.", max_new_tokens=10))'
        ),
        sample_input="The quick brown <extra_id_0> jumps over the lazy dog.",
    ),
)

_SPECS: Optional[dict[str, TaskSpec]] = None
_SPEC_LINE = re.compile(r"^SPEC\s*[:=]", re.MULTILINE)  # a task module's `SPEC = TaskSpec(...)`
_KEYS: dict[str, TaskSpec] = {}


def _discover() -> dict[str, TaskSpec]:
    """Import every module of the ``recipes`` package and collect their ``SPEC``s (main-job order first)."""
    recipes = importlib.import_module(module_name("recipes"))  # forge.recipes when installed

    found: list[TaskSpec] = []
    for info in pkgutil.iter_modules(recipes.__path__):
        if info.ispkg:
            continue
        # import only the modules that define a SPEC at top level: the other recipes' modules (the demo app
        # needs gradio, an optional extra; the main job and pretraining import much more) stay unimported
        name = f"{recipes.__name__}.{info.name}"
        origin = importlib.util.find_spec(name).origin
        if origin is None or not _SPEC_LINE.search(Path(origin).read_text(encoding="utf-8")):
            continue
        module = importlib.import_module(name)
        spec = getattr(module, "SPEC", None)
        if isinstance(spec, TaskSpec):
            found.append(dataclasses.replace(spec, module=module.__name__))
    found += list(_GENERIC_SPECS)
    found.sort(key=lambda s: (s.main_job_order is None, s.main_job_order or 0, s.name))
    specs: dict[str, TaskSpec] = {}
    keys: dict[str, TaskSpec] = {}
    for spec in found:
        spec = dataclasses.replace(spec, keys=(spec.name, *spec.aliases))
        for key in spec.keys:
            if key in keys:
                raise RuntimeError(f"Task name {key!r} is claimed by both {keys[key].module or keys[key].name} "
                                   f"and {spec.module or spec.name}; names and aliases must be unique.")
            keys[key] = spec
        specs[spec.name] = spec
    _KEYS.clear()
    _KEYS.update(keys)
    return specs


def task_specs() -> dict[str, TaskSpec]:
    """Every registered task by name, the main job's tasks first in their order (found once, then cached)."""
    global _SPECS
    if _SPECS is None:
        _SPECS = _discover()
    return _SPECS


def get_task(name: str) -> TaskSpec:
    """The spec whose name or alias is ``name`` ("qa" and "question-answering" give the same spec).

    Raises:
        ValueError: no task has that name; the message lists the known names.
    """
    task_specs()
    if name not in _KEYS:
        raise ValueError(f"Unknown task {name!r}; choose one of {', '.join(sorted(_KEYS))}.")
    return _KEYS[name]


def main_job_tasks() -> tuple[str, ...]:
    """The fine-tuning tasks of the main job, in order."""
    return tuple(name for name, spec in task_specs().items() if spec.main_job_order is not None)
