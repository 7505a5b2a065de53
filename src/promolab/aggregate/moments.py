"""Per-arm sufficient statistics: the boundary between data aggregation and analysis.

Everything after aggregation reads these objects only, never rows, so a warehouse or Spark job that
fills them (same definitions) feeds the same analysis. Every object merges with ``+`` (chunks, days,
partitions) exactly:

- :class:`Moments`: count ``n``, means ``m`` and the centred co-moment matrix
  ``C = sum_i (x_i - m)(x_i - m)'`` of unit-level variables. Merging uses the pooled (Chan et al.)
  update ``C = C_a + C_b + d d' n_a n_b / n`` with ``d = m_b - m_a``: no ``sum_sq - sum^2 / n``
  cancellation, so revenue shifted by 1e6 keeps full precision.
- :class:`Histogram`: counts of each distinct value (ordinal scores of responding units).
- :class:`LogMoments`: moments of ``log(y)`` over the units with ``y > 0`` and the count of ``y < 0``
  (hurdle models of revenue: purchase probability x log-normal amount).
- :class:`ResidualMoments`: for regression adjustment, ``sum e^2``, ``sum e^2 u`` and ``sum e^2 u u'``
  of the residuals ``e`` and centred covariates ``u`` of one arm; plain sums, so ``+`` adds them.
- :class:`PowerSums`: raw sums of the monomials ``y^a x^b`` (``a <= 2``, degree <= 4) of one metric ``y``
  and the covariates ``x`` of one arm; they give :class:`ResidualMoments` for any slopes without a
  second pass over the units, when the data are well-conditioned (see :meth:`PowerSums.residuals`).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

type Vector = npt.NDArray[np.float64]
type Matrix = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Moments:
    """Count, means and centred co-moments of the named unit-level variables of one arm."""

    names: tuple[str, ...]
    n: int
    mean: Vector
    comoment: Matrix

    @classmethod
    def from_values(cls, names: Sequence[str], values: npt.ArrayLike) -> Moments:
        """Moments of rows of ``values`` (shape n x len(names)), computed with centred sums."""
        x = np.asarray(values, dtype=float).reshape(-1, len(names))
        mean = x.mean(axis=0) if len(x) else np.zeros(len(names))
        centred = x - mean
        return cls(tuple(names), len(x), mean, centred.T @ centred)

    def __add__(self, other: Moments) -> Moments:
        if self.names != other.names:
            raise ValueError(f"cannot merge moments of {self.names} with {other.names}")
        n = self.n + other.n
        if n == 0:
            return self
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        comoment = self.comoment + other.comoment + np.outer(delta, delta) * (self.n * other.n / n)
        return Moments(self.names, n, mean, comoment)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def mean_of(self, name: str) -> float:
        return float(self.mean[self.index(name)])

    def cov(self, a: str, b: str, ddof: int = 1) -> float:
        """Covariance of two variables, ``C_ab / (n - ddof)``."""
        return float(self.comoment[self.index(a), self.index(b)]) / (self.n - ddof)

    def var(self, name: str, ddof: int = 1) -> float:
        return self.cov(name, name, ddof)

    def to_dict(self) -> dict[str, object]:
        """JSON form: names, n, means and the centred co-moment matrix (exact round trip)."""
        return {
            "names": list(self.names),
            "n": self.n,
            "mean": self.mean.tolist(),
            "comoment": self.comoment.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Moments:
        return cls(tuple(data["names"]), int(data["n"]), np.array(data["mean"]), np.array(data["comoment"]))


@dataclass(frozen=True)
class Histogram:
    """How many responding units had each value (an ordinal metric of one arm)."""

    counts: Mapping[float, int] = field(default_factory=dict)

    def __add__(self, other: Histogram) -> Histogram:
        return Histogram(dict(Counter(self.counts) + Counter(other.counts)))

    @property
    def n(self) -> int:
        return sum(self.counts.values())

    def arrays(self) -> tuple[Vector, npt.NDArray[np.int64]]:
        """Values (ascending) and their counts."""
        values = np.array(sorted(self.counts), dtype=float)
        return values, np.array([self.counts[v] for v in values], dtype=np.int64)


@dataclass(frozen=True)
class ResidualMoments:
    """``sum e^2``, ``sum e^2 u`` and ``sum e^2 u u'`` over one arm's units (HC sandwich meat)."""

    e2: float
    e2_u: Vector
    e2_uu: Matrix

    def __add__(self, other: ResidualMoments) -> ResidualMoments:
        return ResidualMoments(self.e2 + other.e2, self.e2_u + other.e2_u, self.e2_uu + other.e2_uu)


def power_exponents(covariates: int) -> list[tuple[int, ...]]:
    """Exponents ``(a, b_1 .. b_p)`` of the monomials ``y^a x_1^b_1 .. x_p^b_p`` in :class:`PowerSums`:
    ``a <= 2`` and total degree ``<= 4`` (the degrees of ``e^2 u u'``), constant first."""
    ranges = [range(3), *[range(5)] * covariates]
    return [e for e in itertools.product(*ranges) if sum(e) <= 4]


@dataclass(frozen=True)
class PowerSums:
    """Raw sums ``sum_i y_i^a x_i^b`` of one metric ``y`` and the covariates ``x`` over one arm's units.

    ``sums[k]`` is the sum of the monomial with exponents ``power_exponents(p)[k]``. Raw (not centred)
    sums lose precision when a variable's mean is large against its spread; :meth:`residuals` then
    declines and the caller makes an exact second pass instead.
    """

    names: tuple[str, ...]
    sums: Vector

    #: largest |mean| / standard deviation of ``y`` or a covariate for which :meth:`residuals` answers:
    #: the fourth-order sums then cancel by at most a factor ``(1 + 10)^4`` ~ 1.5e4, so about 1e-11
    #: relative error remains of the 1e-16 of a double (the tests compare with an exact pass at 1e-9).
    MAX_OFFSET = 10.0

    def __add__(self, other: PowerSums) -> PowerSums:
        if self.names != other.names:
            raise ValueError(f"cannot merge power sums of {self.names} with {other.names}")
        return PowerSums(self.names, self.sums + other.sums)

    def residuals(self, moments: Moments, slopes: Vector, centre: Vector) -> ResidualMoments | None:
        """``sum e^2``, ``sum e^2 u``, ``sum e^2 u u'`` of ``e = (y - ybar) - b'(x - xbar)``, ``u = x - c``.

        Means and spreads come from ``moments`` (the same arm, centred and exact). None when some
        variable's |mean| exceeds ``MAX_OFFSET`` standard deviations (raw sums would cancel).
        """
        index = [moments.index(name) for name in self.names]
        mean = moments.mean[index]
        spread = np.sqrt(np.maximum(np.diag(moments.comoment)[index], 0.0) / max(moments.n, 1))
        offset = np.divide(np.abs(mean), spread, out=np.zeros_like(mean), where=spread > 0)
        if np.any(offset > self.MAX_OFFSET) or np.any((spread == 0) & (mean != 0)):
            return None
        p = len(self.names) - 1
        # Linear forms over the basis (1, y, x_1 .. x_p): rows 1, e, u_1 .. u_p.
        forms = np.zeros((p + 2, p + 2))
        forms[0, 0] = 1.0
        forms[1, 0], forms[1, 1], forms[1, 2:] = -(mean[0] - slopes @ mean[1:]), 1.0, -slopes
        forms[2:, 0], forms[2:, 2:] = -np.asarray(centre), np.eye(p)
        g = np.einsum("ia,jb,kc,ld,abcd->ijkl", forms, forms, forms, forms, self._tensor(), optimize=True)
        return ResidualMoments(float(g[1, 1, 0, 0]), g[1, 1, 2:, 0].copy(), g[1, 1, 2:, 2:].copy())

    def _tensor(self) -> npt.NDArray[np.float64]:
        """``T[a, b, c, d] = sum_i v_a v_b v_c v_d`` over ``v = (1, y, x)``; 0 where ``y`` appears > 2 times
        (never multiplied by a non-zero coefficient)."""
        p = len(self.names) - 1
        position = {e: k for k, e in enumerate(power_exponents(p))}
        tensor = np.zeros((p + 2,) * 4)
        for cell in itertools.product(range(p + 2), repeat=4):
            exponent = tuple(cell.count(v) for v in range(1, p + 2))
            if exponent in position:
                tensor[cell] = self.sums[position[exponent]]
        return tensor


@dataclass(frozen=True)
class LogMoments:
    """``positive.n`` units with ``y > 0``, the mean and co-moment of their ``log(y)``; ``negative``: units
    with ``y < 0`` (where a hurdle model does not apply)."""

    positive: Moments
    negative: int = 0

    def __add__(self, other: LogMoments) -> LogMoments:
        return LogMoments(self.positive + other.positive, self.negative + other.negative)


def _merged[T: (Moments, Histogram, LogMoments, PowerSums)](
    a: Mapping[str, T], b: Mapping[str, T]
) -> dict[str, T]:
    """Per-key ``+`` of two mappings; a key in only one of them keeps its value."""
    return {k: (a[k] + b[k] if k in b else a[k]) if k in a else b[k] for k in sorted(a.keys() | b.keys())}


@dataclass(frozen=True)
class ArmStats:
    """Everything the analysis needs about one arm."""

    moments: Moments
    histograms: Mapping[str, Histogram] = field(default_factory=dict)
    logs: Mapping[str, LogMoments] = field(default_factory=dict)
    powers: Mapping[str, PowerSums] = field(default_factory=dict)

    def __add__(self, other: ArmStats) -> ArmStats:
        return ArmStats(
            self.moments + other.moments,
            _merged(self.histograms, other.histograms),
            _merged(self.logs, other.logs),
            _merged(self.powers, other.powers),
        )


@dataclass(frozen=True)
class ExperimentStats:
    """Sufficient statistics of every arm (keyed by variant id, in spec order).

    Attributes:
        arms: per-arm statistics.
        caps: winsorising threshold applied to each capped metric (pooled over arms).
        covariates: names (within ``Moments.names``) of the regression-adjustment covariates.
        segments: segmentation -> segment -> arm -> moments of the metric values (no covariates).
    """

    arms: Mapping[str, ArmStats]
    caps: Mapping[str, float] = field(default_factory=dict)
    covariates: tuple[str, ...] = ()
    segments: Mapping[str, Mapping[str, Mapping[str, Moments]]] = field(default_factory=dict)

    def __add__(self, other: ExperimentStats) -> ExperimentStats:
        if self.caps != other.caps or self.covariates != other.covariates:
            raise ValueError("cannot merge statistics computed with different caps or covariates")
        arms = {
            arm: self.arms[arm] + other.arms[arm] if arm in other.arms else self.arms[arm]
            for arm in self.arms
        }
        arms |= {arm: stats for arm, stats in other.arms.items() if arm not in self.arms}
        segments = {
            name: {
                segment: _merged(
                    self.segments.get(name, {}).get(segment, {}), other_segments.get(segment, {})
                )
                for segment in self.segments.get(name, {}).keys() | other_segments.keys()
            }
            for name in self.segments.keys() | other.segments.keys()
            for other_segments in [other.segments.get(name, {})]
        }
        return ExperimentStats(arms, self.caps, self.covariates, segments)
