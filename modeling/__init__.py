"""Forge model package: ``import modeling`` registers Forge with transformers' Auto classes.

    from modeling import ForgeConfig, ForgeForConditionalGeneration
    model = ForgeForConditionalGeneration(ForgeConfig.from_pretrained("forge-small"))
"""

import transformers
from transformers import AutoConfig

from .configuration_forge import PRESETS, ForgeConfig
from .modeling_forge import (
    ForgeEncoderModel,
    ForgeForConditionalGeneration,
    ForgeForQuestionAnswering,
    ForgeForSequenceClassification,
    ForgeForTokenClassification,
    ForgeModel,
    ForgePreTrainedModel,
)


# Auto class -> Forge class: registered below, and the list a Hub folder's `auto_map` covers (one entry per head;
# recipes/publishing/export.py builds auto_map from it, the task registry names its keys).
AUTO_CLASSES = {
    "AutoModel": ForgeModel,
    "AutoModelForSeq2SeqLM": ForgeForConditionalGeneration,
    "AutoModelForSequenceClassification": ForgeForSequenceClassification,
    "AutoModelForQuestionAnswering": ForgeForQuestionAnswering,
    "AutoModelForTokenClassification": ForgeForTokenClassification,
}

# exist_ok: re-importing (or reloading) the package must not fail.
AutoConfig.register(ForgeConfig.model_type, ForgeConfig, exist_ok=True)
for _auto_name, _model in AUTO_CLASSES.items():
    getattr(transformers, _auto_name).register(ForgeConfig, _model, exist_ok=True)


def preset_parameter_counts() -> dict[str, int]:
    """Parameter count of ForgeForConditionalGeneration for every preset (tied embeddings counted once).

    Built on the meta device, so it costs no memory; `python -m modeling` prints the table.
    """
    import torch

    counts = {}
    for name in PRESETS:
        with torch.device("meta"):
            model = ForgeForConditionalGeneration(ForgeConfig.from_pretrained(name))
        counts[name] = sum(p.numel() for p in model.parameters())
    return counts


# Pipelines for the tasks transformers 5 removed: forge-summarization, forge-question-answering,
# semantic-role-labeling, ... Imported unconditionally, so that a broken pipeline file fails `import modeling` loudly
# instead of leaving `pipeline()` without them. (Model folders loaded with trust_remote_code never run this file.)
from . import pipeline_forge  # noqa: E402

pipeline_forge.register_pipelines()


__all__ = [
    "AUTO_CLASSES",
    "PRESETS",
    "ForgeConfig",
    "ForgeEncoderModel",
    "ForgeForConditionalGeneration",
    "ForgeForQuestionAnswering",
    "ForgeForSequenceClassification",
    "ForgeForTokenClassification",
    "ForgeModel",
    "ForgePreTrainedModel",
    "preset_parameter_counts",
]
