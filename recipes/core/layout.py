"""Where Forge's packages are: top-level folders in a checkout, ``forge.*`` once installed.

In the repository, ``modeling/``, ``tokenization/``, ``recipes/`` and ``model_cards/`` are top-level packages, and
recipes run as ``python -m recipes.sentiment`` from its root. An install (``pip install .``, a wheel, or ``pip install
-e .``) maps the same folders under one namespace, ``forge.modeling``, ``forge.tokenization``, ``forge.recipes``,
``forge.model_cards`` (setup.cfg's ``package_dir``), so that site-packages gets no generic top-level names: a user's
own ``modeling.py`` no longer shadows Forge, and a Python that must not see Forge can hide one name.

So code in ``recipes/`` imports its own modules relatively, and the three sibling packages through this module:

    from .layout import modeling       # modeling/ in a checkout, forge.modeling when installed

(``modeling``, ``tokenization`` and ``model_cards`` are imported when first asked for, as a plain import at that
line would be.) :func:`module_name` spells a module's importable name, for ``python -m`` lines and importlib.

Why not a mapping alone, or an alias package: relative imports cannot cross from ``recipes`` to ``modeling`` in a
checkout (both are top-level there), and aliasing ``modeling`` to ``forge.modeling`` in ``sys.modules`` would bring
back the very clash the namespace removes. The choice between the two names is made once, here.
"""

from __future__ import annotations

import importlib
from types import ModuleType

ROOT = __name__.removesuffix("recipes.core.layout")  # "" in a checkout, "forge." when installed
SIBLINGS = ("modeling", "tokenization", "model_cards")


def module_name(name: str) -> str:
    """The importable name of Forge module ``name`` as the repository spells it: "recipes.qa" -> "forge.recipes.qa"
    when installed, unchanged in a checkout."""
    return ROOT + name


def __getattr__(name: str) -> ModuleType:
    """``modeling``, ``tokenization``, ``model_cards``: the sibling package, under whichever name it has here."""
    if name in SIBLINGS:
        return importlib.import_module(ROOT + name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ROOT", "SIBLINGS", "module_name"]
