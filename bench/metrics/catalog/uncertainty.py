"""Per-case uncertainty scores of the ``"uncertainty"`` protocol: computed by ``case_metrics``
only when asked for (``protocols=("segmentation", "uncertainty")``) and only from class
probabilities, so ordinary runs and their records are unchanged. The scores that need logits
(energy) or several stochastic passes (mutual information) are registered for their metadata
under protocols of their own and computed by the command that has those inputs.

Every score: higher = more uncertain; reduced by the mean over the voxels in the field of view.
"""

from __future__ import annotations

import math

from bench.metrics.context import CaseContext
from bench.metrics.registry import register_metric
from bench.metrics.uncertainty import energy, entropy, max_softmax, model_ood, mutual_information

_EMPTY = "NaN when the field of view selects no voxel"
_NOTE = "higher = more uncertain; a property of the model's output, not a quality ranking"


@register_metric(
    "unc_msp",
    higher_is_better=False,
    worst=1.0,
    bounds=(0.0, 1.0),
    description=f"mean 1 − max softmax probability ({_NOTE})",
    empty=_EMPTY,
    needs_probabilities=True,
    per_class=False,
    position=100,
    protocol="uncertainty",
)
def _unc_msp(case: CaseContext) -> float:
    assert case.prob is not None
    return max_softmax(case.prob, fov=case.fov)


@register_metric(
    "unc_entropy",
    higher_is_better=False,
    worst=math.inf,
    bounds=(0.0, math.inf),
    description=f"mean predictive entropy, natural log ({_NOTE})",
    empty=_EMPTY,
    needs_probabilities=True,
    per_class=False,
    position=101,
    protocol="uncertainty",
)
def _unc_entropy(case: CaseContext) -> float:
    assert case.prob is not None
    return entropy(case.prob, fov=case.fov)


register_metric(
    "unc_energy",
    higher_is_better=False,
    worst=math.inf,
    description="mean energy −T·logsumexp(logits/T) (Liu et al. 2020; higher = more OOD)",
    empty=_EMPTY,
    per_class=False,
    position=102,
    protocol="uncertainty_logits",
)(energy)
register_metric(
    "unc_mi",
    higher_is_better=False,
    worst=math.inf,
    bounds=(0.0, math.inf),
    description=f"mean mutual information of MC-dropout / ensemble samples ({_NOTE})",
    empty=_EMPTY,
    per_class=False,
    position=103,
    protocol="uncertainty_samples",
)(mutual_information)
register_metric(
    "unc_ood",
    higher_is_better=False,
    worst=math.inf,
    description="mean of the network's own per-voxel OOD output (MaskFormer: RbA; higher = more OOD)",
    empty=_EMPTY,
    per_class=False,
    position=104,
    protocol="uncertainty_model",
)(model_ood)
