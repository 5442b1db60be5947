"""The task registry is the one place per-task facts live: every other table reads it, and every name a spec
gives (Auto class, pipeline, flags) exists where it points."""
import pytest
import transformers
from transformers.pipelines import SUPPORTED_TASKS

import modeling
from modeling.pipeline_forge import FORGE_PIPELINES, IN_PROCESS_TASKS
from recipes.publishing import cards, export
from recipes import main_job
from recipes.core import tasks
from recipes.core.registry import get_task, main_job_tasks, task_specs
from recipe_helpers import SAMPLE_DIR


def test_main_job_tasks_in_order_and_old_names_still_work():
    assert main_job_tasks() == ("sentiment", "translation", "summarization", "qa", "srl", "nli")
    assert main_job.TASKS == tasks.TASKS == main_job_tasks()
    for alias, name in [("question-answering", "qa"), ("semantic-role-labeling", "srl"),
                        ("text-classification", "sentiment"), ("pretrain", "pretraining")]:
        assert get_task(alias) is get_task(name)
    with pytest.raises(ValueError, match="Unknown task 'ner'.*question-answering"):
        get_task("ner")


@pytest.mark.parametrize("name", sorted(task_specs()))
def test_every_spec_names_things_that_exist(name):
    spec = get_task(name)
    assert spec.auto_class in modeling.AUTO_CLASSES and hasattr(transformers, spec.auto_class)
    if spec.pipeline_task in FORGE_PIPELINES:  # a Forge pipeline serves it, for the spec's head
        assert FORGE_PIPELINES[spec.pipeline_task][1] == spec.auto_class
    else:  # transformers' own
        assert spec.pipeline_task in SUPPORTED_TASKS
    assert "{model_id}" in spec.usage and spec.title
    if spec.recipe is not None:
        fields = set(spec.data_args_class.__dataclass_fields__)
        assert {column.flag for column in spec.data_columns} <= fields
        assert spec.metric and spec.module == f"recipes.{name}"
    if spec.main_job_order is not None:
        assert (SAMPLE_DIR / name / "train.jsonl").is_file() and spec.demo_call is not None


def test_tables_elsewhere_are_read_from_the_registry_and_modeling():
    # export: auto_map from modeling.AUTO_CLASSES, custom pipelines from pipeline_forge, builtin ones from specs
    assert set(export.MODEL_AUTO_MAP) == {"AutoConfig", *modeling.AUTO_CLASSES}
    assert export.CUSTOM_PIPELINES["question-answering"] == {
        "impl": "pipeline_forge.ForgeQuestionAnsweringPipeline", "pt": ["AutoModelForQuestionAnswering"]}
    assert export.BUILTIN_PIPELINE_TASKS["zero-shot-classification"] == "AutoModelForSequenceClassification"
    assert set(IN_PROCESS_TASKS) >= {"forge-summarization", "semantic-role-labeling"}
    # cards: pipeline tag and title per task, by any of its names
    assert cards.pipeline_tag_for("srl") == cards.pipeline_tag_for("semantic-role-labeling") == "token-classification"
    assert cards.task_title("pretraining") == cards.task_title(None) == "Pretraining (span corruption, text-to-text)"
    assert 'model_id = "me/x"' in cards.default_usage_snippet("qa", "me/x")
    # the upload pre-flight's sample inputs
    from recipes.publishing.upload import sample_inputs

    assert set(sample_inputs()) >= {spec.pipeline_task for spec in task_specs().values()}


def test_registry_works_without_the_demo_extra():
    """Finding the tasks imports only modules that define a SPEC: no gradio (the optional demo extra) needed."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['gradio'] = None\n"  # `import gradio` now raises ImportError, as when not installed
        "from recipes.core.registry import task_specs\n"
        "specs = task_specs()\n"
        "assert {'sentiment', 'translation', 'summarization', 'qa', 'srl'} <= set(specs), sorted(specs)\n"
        "assert 'recipes.demo_app' not in sys.modules and 'recipes.main_job' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
