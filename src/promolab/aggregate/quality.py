"""What the aggregation did with the rows it was given: the ``data_quality`` block of every analysis.

Rows that do not count are never dropped silently: an event table's rows of units the assignments do not
hold (``unmatched_rows``, of which ``missing_id_rows`` have no id at all), rows dated outside the test
window or not dated, and missing metric values accepted by a metric's ``missing`` policy are counted
here, reported in the JSON and warned about on stderr.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from promolab import format as text


@dataclass(frozen=True)
class TableRows:
    """Rows of one event table and what became of them.

    ``matched_rows`` are rows of units in the analysed arms; of those, ``outside_window_rows`` are dated
    outside ``[start, end + post_days]`` and ``undated_rows`` have no readable date (both left out when
    the table is ``windowed``). ``holdout_rows`` are rows of held-out units (assigned, compared with
    nothing); ``unmatched_rows`` are rows of units the assignments do not hold (including
    ``missing_id_rows``, which have no unit id).
    """

    rows: int
    matched_rows: int
    unmatched_rows: int
    missing_id_rows: int
    outside_window_rows: int
    undated_rows: int
    windowed: bool
    holdout_rows: int = 0

    @property
    def analysed_rows(self) -> int:
        return self.matched_rows - self.outside_window_rows - self.undated_rows


OUTLIER_RATIO = 10.0  # a largest per-unit value this many times the next largest is worth a warning


@dataclass(frozen=True)
class DataQuality:
    """Row accounting of every event table, and missing values per metric with the policy applied."""

    tables: dict[str, TableRows] = field(default_factory=dict)
    missing_values: dict[str, int] = field(default_factory=dict)
    missing_policy: dict[str, str] = field(default_factory=dict)
    largest: dict[str, tuple[float, float]] = field(default_factory=dict)  # metric -> two largest values

    def to_dict(self) -> dict[str, Any]:
        return {
            "tables": {
                name: {**asdict(rows), "analysed_rows": rows.analysed_rows}
                for name, rows in self.tables.items()
            },
            "missing_values": {
                metric: {"units_or_rows": count, "policy": self.missing_policy[metric]}
                for metric, count in self.missing_values.items()
            },
            "largest_values": {metric: list(values) for metric, values in self.largest.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataQuality:
        fields = set(TableRows.__dataclass_fields__)
        tables = {
            name: TableRows(**{k: v for k, v in rows.items() if k in fields})
            for name, rows in data.get("tables", {}).items()
        }
        missing = data.get("missing_values", {})
        return cls(
            tables,
            {m: int(v["units_or_rows"]) for m, v in missing.items()},
            {m: str(v["policy"]) for m, v in missing.items()},
            {m: (float(v[0]), float(v[1])) for m, v in data.get("largest_values", {}).items()},
        )

    def warnings(self) -> list[str]:
        """One sentence per thing a reader of the results should know about the rows."""
        found = []
        for name, rows in self.tables.items():
            if rows.unmatched_rows:
                ids = f", {rows.missing_id_rows:,} of them without a unit id" if rows.missing_id_rows else ""
                found.append(
                    f"{name}: {rows.unmatched_rows:,} of {rows.rows:,} rows are of units not in the "
                    f"assignments{ids}; they are not analysed"
                )
            if rows.outside_window_rows or rows.undated_rows:
                found.append(
                    f"{name}: {rows.outside_window_rows:,} rows dated outside the test window and "
                    f"{rows.undated_rows:,} without a readable date are left out"
                )
        for metric, (top, runner_up) in self.largest.items():
            if runner_up > 0 and top >= OUTLIER_RATIO * runner_up:
                ratio = top / runner_up
                found.append(
                    f"metric '{metric}': one unit has {text.number(top)}, {ratio:.1f} times the next "
                    f"largest ({text.number(runner_up)}); check that unit, or cap the metric (capping) so it "
                    "cannot decide the test alone"
                )
        for metric, count in self.missing_values.items():
            policy = self.missing_policy[metric]
            if count and policy != "error":
                treated = "counted as 0" if policy == "zero" else "left out"
                found.append(f"metric '{metric}': {count:,} missing values {treated} (missing: {policy})")
        return found
