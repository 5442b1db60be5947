"""Model card templates (Jinja2 markdown), rendered by ``recipes.publishing.cards.write_model_card``."""

from __future__ import annotations

from importlib import resources

TEMPLATE_NAME = "template.md"


def load_template(name: str = TEMPLATE_NAME) -> str:
    """Return the text of a card template shipped in this package."""
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


__all__ = ["TEMPLATE_NAME", "load_template"]
