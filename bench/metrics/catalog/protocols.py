"""Metrics of the interactive and multi-rater protocols, registered for their direction, worst
value and empty rule (the leaderboard's lookups). ``case_metrics`` never computes them: their
protocols are outside ``CASE_PROTOCOLS``, and each ``fn`` is the function the protocol's command
calls with its own inputs (a Dice-per-click sequence; probabilities and the raters' labels).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from bench.metrics.interactive import dice_after, noc
from bench.metrics.multirater import (
    consensus_dice,
    crps_volume,
    crps_volume_predictive,
    dice_to_consensus,
    ece_raters,
    ece_soft,
)
from bench.metrics.registry import register_metric

MAX_CLICKS = 20  # the protocol's click budget (NoC of a case that never reaches the threshold)
_DICE_EMPTY = "as dice: both empty NaN; one empty 0"


def _noc_at(threshold: float) -> Callable[[Sequence[float]], float]:
    def noc_at(dice_per_click: Sequence[float]) -> float:
        return noc(dice_per_click, threshold, MAX_CLICKS)

    return noc_at


def _dice_at(k: int) -> Callable[[Sequence[float]], float]:
    def dice_at(dice_per_click: Sequence[float]) -> float:
        return dice_after(dice_per_click, k)

    return dice_at


for _pct in (85, 90):
    register_metric(
        f"noc{_pct}",
        higher_is_better=False,
        worst=float(MAX_CLICKS),
        bounds=(1.0, float(MAX_CLICKS)),
        description=f"clicks to reach Dice >= 0.{_pct} ({MAX_CLICKS} if never)",
        empty=f"a NaN Dice (both masks empty) never reaches the threshold: {MAX_CLICKS}",
        per_class=False,
        position=200 + _pct / 100,
        protocol="interactive",
    )(_noc_at(_pct / 100))
for _k in (1, 3, 5):
    register_metric(
        f"dice_at_{_k}",
        higher_is_better=True,
        worst=0.0,
        bounds=(0.0, 1.0),
        description=f"Dice after {_k} simulated click(s)",
        empty=_DICE_EMPTY,
        per_class=False,
        position=210 + _k,
        protocol="interactive",
    )(_dice_at(_k))

_MULTIRATER = (
    (
        "ece_raters",
        ece_raters,
        False,
        1.0,
        "top-label ECE (50 bins) against each rater, mean (CURVAS)",
        False,
    ),
    ("ece_rater_mean", ece_soft, False, 1.0, "top-label ECE against the raters' mean label", False),
    ("crps_volume", crps_volume, False, math.inf, "CRPS of the raters' volume Gaussian at Σp (CURVAS)", True),
    (
        "crps_volume_predictive",
        crps_volume_predictive,
        False,
        math.inf,
        "CRPS of the predicted volume distribution at each rater's volume, mean",
        True,
    ),
    ("dice_consensus", dice_to_consensus, True, 0.0, "Dice against the strict-majority consensus", True),
    ("dice_unanimous", consensus_dice, True, 0.0, "Dice where all raters agree (CURVAS)", True),
)
_MULTIRATER_EMPTY = {
    "ece_raters": "always defined (every voxel counts)",
    "ece_rater_mean": "always defined (every voxel counts)",
    "crps_volume": "always finite; an empty class has volume 0",
    "crps_volume_predictive": "always finite; an empty class has volume 0",
    "dice_consensus": _DICE_EMPTY,
    "dice_unanimous": "NaN when the unanimous foreground is empty (CURVAS); else prediction empty: 0",
}
for _i, (_name, _fn, _up, _worst, _what, _per_class) in enumerate(_MULTIRATER):
    register_metric(
        _name,
        higher_is_better=_up,
        worst=_worst,
        bounds=(0.0, 1.0) if _worst < math.inf else (0.0, math.inf),
        description=_what,
        empty=_MULTIRATER_EMPTY[_name],
        per_class=_per_class,
        uses_spacing=_name.startswith("crps"),
        position=300 + _i,
        protocol="multirater",
    )(_fn)
