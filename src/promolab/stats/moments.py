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

import functools
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

    def __eq__(self, other: object) -> bool:
        """Equal names, count, means and co-moments (exactly: the JSON round trip keeps every bit)."""
        return (
            isinstance(other, Moments)
            and (self.names, self.n) == (other.names, other.n)
            and np.array_equal(self.mean, other.mean)
            and np.array_equal(self.comoment, other.comoment)
        )

    __hash__ = None  # type: ignore[assignment]  # arrays: not hashable

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


MAX_POWER_COVARIATES = 3  # more covariates: C(p + 4, 4) sums per arm grow too wide; a residual pass


@functools.cache
def power_exponents(covariates: int) -> tuple[tuple[int, ...], ...]:
    """Exponents ``(a, b_1 .. b_p)`` of the monomials ``y^a x_1^b_1 .. x_p^b_p`` in :class:`PowerSums`:
    ``a <= 2`` and total degree ``<= 4`` (the degrees of ``e^2 u u'``), constant first."""
    ranges = [range(3), *[range(5)] * covariates]
    return tuple(e for e in itertools.product(*ranges) if sum(e) <= 4)


@dataclass(frozen=True)
class PowerSums:
    """Sums ``sum_i (y_i - o_y)^a (x_i - o_x)^b`` of one metric ``y`` and the covariates ``x`` over one
    arm's units, about the ``origin`` ``o`` (None: 0, the raw sums).

    ``sums[k]`` is the sum of the monomial with exponents ``power_exponents(p)[k]`` (``sums[0] = n``).
    Sums about 0 cancel when a variable's mean is large against its spread or when the covariates
    explain ``y`` almost perfectly; :meth:`residuals` then declines and the caller makes an exact second
    pass instead. Sums about the arm's means (the warehouse query's, which cannot make that pass) do not
    cancel through the means.
    """

    names: tuple[str, ...]
    sums: Vector
    origin: Vector | None = None

    #: largest cancellation ``(1 + r)^4 * S_yy / S_ee`` accepted by :meth:`residuals` (``r``: the largest
    #: |mean| / standard deviation of ``y`` and the covariates in the arm; ``S_yy / S_ee``: total over
    #: residual sum of squares). A double keeps 1e-16, so about 1e-11 relative error remains; the tests
    #: compare with extended-precision sums near this limit.
    MAX_CANCELLATION = 1e5

    def __add__(self, other: PowerSums) -> PowerSums:
        if self.names != other.names:
            raise ValueError(f"cannot merge power sums of {self.names} with {other.names}")
        if not np.array_equal(self._origin(), other._origin()):
            raise ValueError(f"cannot merge power sums of {self.names} about different origins")
        return PowerSums(self.names, self.sums + other.sums, self.origin)

    def without(self, name: str) -> PowerSums:
        """The sums of the same units without the covariate ``name``: the monomials in which it has
        exponent 0 (their order in :func:`power_exponents` is kept when its coordinate is removed)."""
        k = self.names.index(name)
        if k == 0:
            raise ValueError("the metric itself cannot be dropped from its power sums")
        kept = [j for j, e in enumerate(power_exponents(len(self.names) - 1)) if e[k] == 0]
        origin = None if self.origin is None else np.delete(self.origin, k)
        return PowerSums(self.names[:k] + self.names[k + 1 :], self.sums[kept], origin)

    def residuals(self, moments: Moments, slopes: Vector, centre: Vector) -> ResidualMoments | None:
        """``sum e^2``, ``sum e^2 u``, ``sum e^2 u u'`` of ``e = (y - ybar) - b'(x - xbar)``, ``u = x - c``.

        Means, spreads and ``S_ee`` come from ``moments`` (the same arm, centred and exact). None when
        the raw sums would cancel by more than ``MAX_CANCELLATION`` or do not cover ``moments``' units.
        """
        if self.sums[0] != moments.n:
            return None
        index = [moments.index(name) for name in self.names]
        mean = moments.mean[index] - self._origin()  # the means and the centre about the sums' origin
        centre = np.asarray(centre) - self._origin()[1:]
        comoment = moments.comoment[np.ix_(index, index)]
        if not self._well_conditioned(mean, comoment, moments.n, slopes):
            return None
        p = len(self.names) - 1
        # Linear forms over the basis (1, y, x_1 .. x_p): rows 1, e, u_1 .. u_p.
        forms = np.zeros((p + 2, p + 2))
        forms[0, 0] = 1.0
        forms[1, 0], forms[1, 1], forms[1, 2:] = -(mean[0] - slopes @ mean[1:]), 1.0, -slopes
        forms[2:, 0], forms[2:, 2:] = -np.asarray(centre), np.eye(p)
        g = np.einsum("ia,jb,kc,ld,abcd->ijkl", forms, forms, forms, forms, self._tensor(), optimize=True)
        return ResidualMoments(float(g[1, 1, 0, 0]), g[1, 1, 2:, 0].copy(), g[1, 1, 2:, 2:].copy())

    def _origin(self) -> Vector:
        return np.zeros(len(self.names)) if self.origin is None else np.asarray(self.origin, dtype=float)

    def _well_conditioned(self, mean: Vector, comoment: Matrix, n: int, slopes: Vector) -> bool:
        """``(1 + r)^4 * S_yy / S_ee <= MAX_CANCELLATION`` (see the attribute); false for a constant
        non-zero variable or a perfect fit."""
        spread = np.sqrt(np.maximum(np.diag(comoment), 0.0) / max(n, 1))
        if np.any((spread == 0) & (mean != 0)):
            return False
        offset = float(np.max(np.divide(np.abs(mean), spread, out=np.zeros_like(mean), where=spread > 0)))
        s_yy = comoment[0, 0]
        s_ee = s_yy - 2 * slopes @ comoment[1:, 0] + slopes @ comoment[1:, 1:] @ slopes
        if s_yy == 0:  # y constant 0 in the arm: e = -b'(x - xbar), no cancellation with y
            return (1 + offset) ** 4 <= self.MAX_CANCELLATION
        return s_ee > 0 and (1 + offset) ** 4 * s_yy / s_ee <= self.MAX_CANCELLATION

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


def _merged(a: Mapping[str, Moments], b: Mapping[str, Moments]) -> dict[str, Moments]:
    """Per-key ``+`` of two mappings; a key in only one of them keeps its value (segments an arm lacks)."""
    return {k: (a[k] + b[k] if k in b else a[k]) if k in a else b[k] for k in sorted(a.keys() | b.keys())}


def _both[T: (Histogram, LogMoments, PowerSums)](a: Mapping[str, T], b: Mapping[str, T]) -> dict[str, T]:
    """Per-key ``+`` of the keys both mappings have."""
    return {k: a[k] + b[k] for k in a if k in b}


@dataclass(frozen=True)
class ArmStats:
    """Everything the analysis needs about one arm (per metric: ordinal histograms, log-moments, power sums).

    A merge keeps a metric's histogram, log-moments or power sums only when both sides have them: the
    statistic of part of the units would be silently wrong (e.g. HC1 errors from half the power sums).
    """

    moments: Moments
    histograms: Mapping[str, Histogram] = field(default_factory=dict)
    logs: Mapping[str, LogMoments] = field(default_factory=dict)
    powers: Mapping[str, PowerSums] = field(default_factory=dict)

    def __add__(self, other: ArmStats) -> ArmStats:
        return ArmStats(
            self.moments + other.moments,
            _both(self.histograms, other.histograms),
            _both(self.logs, other.logs),
            _both(self.powers, other.powers),
        )


@dataclass(frozen=True)
class ExperimentStats:
    """Sufficient statistics of every arm (keyed by variant id, in spec order).

    Attributes:
        arms: per-arm statistics.
        caps: winsorising threshold applied to each capped metric (pooled over arms).
        covariates: names (within ``Moments.names``) of the regression-adjustment covariates.
        segments: segmentation -> segment -> arm -> moments of the metric values (no covariates).
        own: metric -> the name of its own extra covariate (its pre-period value), after ``covariates``.
    """

    arms: Mapping[str, ArmStats]
    caps: Mapping[str, float] = field(default_factory=dict)
    covariates: tuple[str, ...] = ()
    segments: Mapping[str, Mapping[str, Mapping[str, Moments]]] = field(default_factory=dict)
    own: Mapping[str, str] = field(default_factory=dict)

    def covariates_of(self, metric: str) -> tuple[str, ...]:
        """The covariates that adjust ``metric``: the shared ones, then its own pre-period value."""
        own = self.own.get(metric)
        return self.covariates if own is None else (*self.covariates, own)

    def __add__(self, other: ExperimentStats) -> ExperimentStats:
        same = self.caps == other.caps and self.covariates == other.covariates and self.own == other.own
        if not same:
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
        return ExperimentStats(arms, self.caps, self.covariates, segments, self.own)
