"""Which DuckDB column types count as numeric metric columns."""

from __future__ import annotations

import pytest

from promolab.aggregate.inputs import NUMERIC_TYPES as _NUMERIC_TYPES


@pytest.mark.parametrize("kind", ["INTEGER", "UBIGINT", "DOUBLE", "DECIMAL(18,3)", "BOOLEAN", "HUGEINT"])
def test_numeric_types_are_accepted(kind):
    assert kind.startswith(_NUMERIC_TYPES)


@pytest.mark.parametrize("kind", ["UUID", "UNION(a INTEGER)", "VARCHAR", "DATE", "TIMESTAMP"])
def test_other_types_are_rejected(kind):
    assert not kind.startswith(_NUMERIC_TYPES)
