"""The interval a leaderboard cell prints: a mean over test cases and training seeds whose coverage
holds with 3 seeds (docs/leaderboard.md, "Intervals").

A row's values form a ``(runs, units)`` matrix: one row per training run (seed × fold), one column
per independent test unit (a case, or a case group such as a patient when the dataset declares
groups: the cases of a group are averaged first). Three designs occur:

- **crossed** (every run tested on the same units, the usual fixed test set): the two-way random
  effects model ``y_su = mu + a_s + b_u + e_su`` with ANOVA mean squares ``MS_seed``, ``MS_unit``,
  ``MS_res``. ``Var(mean) = (MS_seed + MS_unit - MS_res) / (S U)`` with Satterthwaite's degrees of
  freedom, capped at those of the larger of ``MS_seed`` / ``MS_unit``: with 3 seeds the seed term
  has 2 degrees of freedom, and Satterthwaite's estimate (itself random) then runs liberal (88-92 %
  coverage in our simulation where the seed share is 20 %); the cap brings it back to 94-97 %.
  It is floored at ``min(S, U) - 1``: when ``MS_res`` is about as large as the other two (a paired
  difference of two similar rows), the negative term drives Satterthwaite's value below 1 and the
  t quantile towards infinity.
- **nested** (each run tested on its own units, e.g. a test set held out by seed): the run means
  are independent draws that carry both the case and the training noise, so the interval is
  Student's t over the run means (``S - 1`` degrees of freedom).
- **units** (one run): Student's t over the units. It ignores training noise, and the table
  says so.

Pure numpy/scipy; nothing here reads records.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import special as _special

CONFIDENCE = 0.95

DESIGNS = ("crossed", "nested", "units", "none")


@dataclass(frozen=True)
class MeanInterval:
    """A confidence interval of a row's mean and the spreads behind it.

    Attributes:
        mean: the mean over every finite value used (runs × units).
        lo, hi: the interval (NaN when it cannot be formed; the mean itself when it is infinite).
        df: degrees of freedom of the t quantile.
        design: ``crossed``, ``nested``, ``units`` (one run: training noise ignored) or ``none``.
        n_runs, n_units: how many runs and independent units entered.
        seed_sd: standard deviation of the seed effect (crossed: ANOVA estimate, >= 0; nested: of
            the run means); NaN with one run.
        unit_sd: standard deviation between units (crossed: ANOVA estimate; otherwise of the values).
        confidence: the nominal level.
    """

    mean: float
    lo: float
    hi: float
    df: float
    design: str
    n_runs: int
    n_units: int
    seed_sd: float
    unit_sd: float
    confidence: float = CONFIDENCE

    @property
    def ignores_training_noise(self) -> bool:
        """True when the interval has no seed term (a single run)."""
        return self.design == "units"

    def within(self, bounds: tuple[float, float]) -> MeanInterval:
        """The interval cut to ``bounds`` ``(lo, hi)``, the values a metric can take
        (:func:`bench.metrics.registry.metric_bounds`): a t interval of a non-negative count can
        reach below 0, of a Dice above 1. Cutting keeps the coverage: a mean of such values lies
        in the bounds, so it lies in the cut interval whenever it lies in the uncut one. NaN ends
        stay NaN."""
        lo, hi = bounds
        cut_lo = self.lo if math.isnan(self.lo) else min(max(self.lo, lo), hi)
        cut_hi = self.hi if math.isnan(self.hi) else max(min(self.hi, hi), lo)
        if cut_lo == self.lo and cut_hi == self.hi:
            return self
        return replace(self, lo=cut_lo, hi=cut_hi)


def group_units(
    matrix: np.ndarray, cases: Sequence[str], groups: dict[str, str] | None
) -> tuple[np.ndarray, list[str]]:
    """Average the columns of ``matrix`` (runs, cases) within each case group (NaN-skipping).

    ``groups`` maps a case id to its group (subject, patient, eye pair); cases without a group are
    their own unit. Returns ``(runs, units)`` and the unit names (sorted).
    """
    matrix = np.atleast_2d(np.asarray(matrix, dtype=np.float64))
    if not groups:
        return matrix, list(cases)
    unit_of = [groups.get(c, c) for c in cases]
    units = sorted(set(unit_of))
    out = np.full((matrix.shape[0], len(units)), np.nan)
    for j, u in enumerate(units):
        cols = [i for i, x in enumerate(unit_of) if x == u]
        block = matrix[:, cols]
        with np.errstate(invalid="ignore"):
            counts = np.sum(~np.isnan(block), axis=1)
            sums = np.nansum(block, axis=1)
        out[:, j] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return out, units


def t_quantile(q: float, df: float) -> float:
    """Student's t quantile: ``scipy.stats.t.ppf(q, df)`` to the bit (it is this ufunc, ``stdtrit``,
    behind a per-call argument check of about 0.1 ms, a third of a leaderboard's interval time)."""
    return float(_special.stdtrit(df, q))


def _t_interval(values: np.ndarray, confidence: float) -> tuple[float, float, float, float]:
    """Student's t interval of the mean of ``values``: (mean, lo, hi, df)."""
    n = values.size
    m = float(values.mean())
    if n < 2:
        return m, math.nan, math.nan, math.nan
    se = float(values.std(ddof=1)) / math.sqrt(n)
    t = t_quantile(0.5 + confidence / 2.0, n - 1)
    return m, m - t * se, m + t * se, float(n - 1)


def crossed_components(y: np.ndarray) -> tuple[float, float, float]:
    """ANOVA mean squares ``(MS_seed, MS_unit, MS_res)`` of a complete ``(S, U)`` matrix."""
    s, u = y.shape
    m = y.mean()
    ys, yu = y.mean(axis=1), y.mean(axis=0)
    ms_seed = u * float(((ys - m) ** 2).sum()) / (s - 1)
    ms_unit = s * float(((yu - m) ** 2).sum()) / (u - 1)
    res = y - ys[:, None] - yu[None, :] + m
    ms_res = float((res**2).sum()) / ((s - 1) * (u - 1))
    return ms_seed, ms_unit, ms_res


def crossed_components_many(yt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`crossed_components` of ``R`` complete ``(S, U)`` matrices at once, given transposed as
    ``yt`` ``(R, U, S)``, and their means: ``(MS_seed, MS_unit, MS_res, mean)``, each ``(R,)``.

    To the bit the values of one matrix at a time as :func:`mean_interval` passes it (tested): that
    matrix comes out of a boolean column selection laid out column by column, so its sums run in
    that memory order, which ``yt`` has row by row."""
    r, u, s = yt.shape
    m = yt.reshape(r, u * s).mean(axis=1)
    ys, yu = yt.mean(axis=1), yt.mean(axis=2)  # (R, S) over units, (R, U) over seeds
    ms_seed = u * ((ys - m[:, None]) ** 2).sum(axis=1) / (s - 1)
    ms_unit = s * ((yu - m[:, None]) ** 2).sum(axis=1) / (u - 1)
    res = yt - ys[:, None, :] - yu[:, :, None] + m[:, None, None]
    ms_res = (res**2).reshape(r, u * s).sum(axis=1) / ((s - 1) * (u - 1))
    return ms_seed, ms_unit, ms_res, m


def crossed_interval(y: np.ndarray, confidence: float = CONFIDENCE) -> MeanInterval:
    """The crossed seed × unit interval of a complete finite ``(S >= 2, U >= 2)`` matrix."""
    s, u = y.shape
    return crossed_from_components(*crossed_components(y), float(y.mean()), s, u, confidence)


def crossed_from_components(
    ms_seed: float, ms_unit: float, ms_res: float, m: float, s: int, u: int, confidence: float = CONFIDENCE
) -> MeanInterval:
    """The crossed interval of an ``(S, U)`` matrix with mean ``m`` from its ANOVA mean squares."""
    terms = [(ms_seed, s - 1), (ms_unit, u - 1), (-ms_res, (s - 1) * (u - 1))]
    var_sum = ms_seed + ms_unit - ms_res
    if var_sum <= 0:  # sampling noise made the estimate negative: keep the larger mean square
        var_sum = max(ms_seed, ms_unit)
    denom = sum(v * v / d for v, d in terms)
    df = var_sum * var_sum / denom if denom > 0 else float(u - 1)
    df = min(df, float(s - 1) if ms_seed >= ms_unit else float(u - 1))
    df = max(df, float(min(s, u) - 1))  # the negative MS_res term can drive it below 1 (huge t)
    se = math.sqrt(var_sum / (s * u))
    t = t_quantile(0.5 + confidence / 2.0, df) if se > 0 else 0.0
    seed_var = max((ms_seed - ms_res) / u, 0.0)
    unit_var = max((ms_unit - ms_res) / s, 0.0)
    return MeanInterval(
        m, m - t * se, m + t * se, df, "crossed", s, u, math.sqrt(seed_var), math.sqrt(unit_var), confidence
    )


def mean_interval(matrix: np.ndarray, confidence: float = CONFIDENCE) -> MeanInterval:
    """The interval of a row's mean from its ``(runs, units)`` matrix (NaN: no value).

    Runs without any value are dropped. The design is chosen from where the values are: crossed
    when at least two runs share at least two units with a value in every run (those units are
    used), nested when the runs' units do not overlap, and a t interval over the units with one
    run. Values of ``±inf`` make the mean infinite; the interval is then that value at both ends.
    """
    y = np.atleast_2d(np.asarray(matrix, dtype=np.float64))
    y = y[~np.all(np.isnan(y), axis=1)] if y.size else y
    if y.size == 0 or y.shape[0] == 0:
        nan = math.nan
        return MeanInterval(nan, nan, nan, nan, "none", 0, 0, nan, nan, confidence)
    finite = y[~np.isnan(y)]
    if np.isinf(finite).any():
        m = float(finite.mean())
        return MeanInterval(m, m, m, math.nan, "none", y.shape[0], y.shape[1], math.nan, math.nan, confidence)
    s = y.shape[0]
    if s == 1:
        v = y[0][~np.isnan(y[0])]
        m, lo, hi, df = _t_interval(v, confidence)
        sd = float(v.std(ddof=1)) if v.size > 1 else math.nan
        return MeanInterval(m, lo, hi, df, "units", 1, v.size, math.nan, sd, confidence)
    complete = ~np.isnan(y).any(axis=0)
    if complete.sum() >= 2:
        return crossed_interval(y[:, complete], confidence)
    run_means = np.array([r[~np.isnan(r)].mean() for r in y])
    m, lo, hi, df = _t_interval(run_means, confidence)
    units = int((~np.isnan(y)).any(axis=0).sum())
    per_unit = y[~np.isnan(y)]
    unit_sd = float(per_unit.std(ddof=1)) if per_unit.size > 1 else math.nan
    return MeanInterval(
        float(m), lo, hi, df, "nested", s, units, float(run_means.std(ddof=1)), unit_sd, confidence
    )
