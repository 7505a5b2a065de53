"""The README documents every spec field and every CLI command."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel

from promolab.cli import app
from promolab.spec import models

from .conftest import ROOT

README = (ROOT / "README.md").read_text()
REFERENCE = README.split("## Spec reference", 1)[1].split("## Command line", 1)[0]


def _spec_models() -> list[type[BaseModel]]:
    return [
        obj
        for obj in vars(models).values()
        if isinstance(obj, type)
        and issubclass(obj, models.SpecModel)
        and not obj.__name__.startswith("_")
        and obj is not models.SpecModel
    ]


@pytest.mark.parametrize("model", _spec_models(), ids=lambda m: m.__name__)
def test_every_spec_field_is_in_the_reference(model):
    missing = [name for name in model.model_fields if not re.search(rf"`{name}`", REFERENCE)]
    assert not missing, f"README spec reference lacks {model.__name__} fields {missing}"


def test_every_command_is_in_the_cli_reference():
    commands = [c.name or c.callback.__name__ for c in app.registered_commands]
    assert commands
    for name in commands:
        assert f"`promolab {name}" in README, name
