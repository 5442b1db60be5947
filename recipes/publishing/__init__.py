"""Publishing a trained Forge model: everything between a Trainer run and the Hub.

- :mod:`recipes.publishing.export`: save a Hub-ready folder (safetensors, code files, ``auto_map`` for every head,
  the task's ``custom_pipelines`` entry, both tokenizer forms), atomically;
- :mod:`recipes.publishing.cards`: the model card, rendered from ``model_cards/template.md`` with the run's measured
  results and the task's text from the task registry;
- :mod:`recipes.publishing.upload`: the pre-flight checks (static, then a load in a Python without Forge) and the
  upload; ``hub_upload.py`` and the ``forge-hub-upload`` command run its ``main``.

Per-task facts come from :mod:`recipes.core.registry`; per-head and per-pipeline facts from ``modeling``.
"""
