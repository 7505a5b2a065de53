"""The docs document every spec field and every CLI command, and their examples are valid."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel

from promolab.cli import app
from promolab.spec import models

from .conftest import ROOT

README = (ROOT / "README.md").read_text()
REFERENCE = (ROOT / "docs" / "spec.md").read_text().split("## Spec reference", 1)[1]
CLI = (ROOT / "docs" / "cli.md").read_text()


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
    names = [field.alias or name for name, field in model.model_fields.items()]  # as users write them
    missing = [name for name in names if not re.search(rf"`{name}`", REFERENCE)]
    assert not missing, f"docs/spec.md's reference lacks {model.__name__} fields {missing}"


def test_every_command_is_in_the_cli_reference():
    commands = [c.name or c.callback.__name__ for c in app.registered_commands]
    assert commands
    for name in commands:
        assert f"`promolab {name}" in README, name
        assert f"`promolab {name}" in CLI, name


def test_the_readme_spec_example_is_valid():
    import yaml

    from promolab.spec import spec_from_dict

    block = README.split("```yaml\n", 1)[1].split("```", 1)[0]
    spec = spec_from_dict(yaml.safe_load(block))
    assert spec.metric("revenue").unit == "USD"
