"""Which DuckDB column types count as numeric metric columns."""

from __future__ import annotations

import pytest

from promolab.aggregate.inputs import is_numeric


@pytest.mark.parametrize(
    "kind", ["INTEGER", "UBIGINT", "DOUBLE", "DECIMAL(18,3)", "BOOLEAN", "HUGEINT", "FLOAT"]
)
def test_numeric_types_are_accepted(kind):
    assert is_numeric(kind)


@pytest.mark.parametrize(
    "kind",
    ["UUID", "UNION(a INTEGER)", "VARCHAR", "DATE", "TIMESTAMP", "DOUBLE[]", "INTEGER[]", "STRUCT(a DOUBLE)"],
)
def test_other_types_are_rejected(kind):
    assert not is_numeric(kind)
