"""``MetricSettings``: every setting a metric reads, as one frozen object, and its default.

The defaults here are the only ones: a config's ``eval`` section, the runner, ``evaluate`` and
ensembles build their settings with :meth:`MetricSettings.from_mapping` instead of repeating
them. A metric added in its own file may introduce a setting of its own
(``register_metric(..., new_settings={"name": default})``); its value then travels in
:attr:`MetricSettings.extra` and its default stays in that registration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from bench.metrics.registry import declared_settings


@dataclass(frozen=True)
class MetricSettings:
    """The settings of ``case_metrics`` (validated on construction).

    Attributes:
        betti_patch: patch size of the patch-wise Betti errors (``*_patch`` keys): one int for
            every axis or one per axis; ``None`` skips them.
        nsd_tolerance: NSD tolerance τ >= 0 in the units of the case's spacing.
        n_bins: number of equal-width ECE bins on [0, 1].
        extra: values of settings that registered metrics introduce (``new_settings``); a
            setting missing here has the default of its registration.

    Raises:
        ValueError: on an invalid value or an ``extra`` key that no registered metric declares.
    """

    betti_patch: int | tuple[int, ...] | None = None
    nsd_tolerance: float = 1.0
    n_bins: int = 15
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        bp = self.betti_patch
        if bp is not None:
            sizes = [bp] if np.isscalar(bp) else list(bp)  # type: ignore[arg-type]
            if not sizes or any(isinstance(s, bool) or int(s) < 1 for s in sizes):
                raise ValueError(
                    f"`betti_patch` must be a positive int or one positive size per axis, got {bp!r}."
                )
            if not np.isscalar(bp):
                object.__setattr__(self, "betti_patch", tuple(bp))  # type: ignore[arg-type]
        tol = self.nsd_tolerance
        if not np.isfinite(tol) or tol < 0:
            raise ValueError(f"`nsd_tolerance` must be finite and >= 0, got {tol}.")
        if not isinstance(self.n_bins, int) or isinstance(self.n_bins, bool) or self.n_bins < 1:
            raise ValueError(f"`n_bins` must be a positive int, got {self.n_bins!r}.")
        declared, own = declared_settings(), _own_fields()
        for key in self.extra:
            if key in own:
                raise ValueError(
                    f"`{key}` is a field of MetricSettings; pass it as `{key}=`, not in `extra`."
                )
            if key not in declared:
                known = ", ".join(sorted(declared)) or "(none)"
                raise ValueError(f"unknown metric setting {key!r}; registered metrics declare: {known}.")
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))

    def get(self, name: str) -> Any:
        """The value of setting ``name``: a field, an ``extra`` value or its registered default.

        Raises:
            KeyError: for a setting that is neither a field nor declared by a registered metric.
        """
        if name in _own_fields():
            return getattr(self, name)
        if name in self.extra:
            return self.extra[name]
        declared = declared_settings()
        if name in declared:
            return declared[name]
        raise KeyError(f"unknown metric setting {name!r}; known: {', '.join([*_own_fields(), *declared])}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | Any) -> MetricSettings:
        """Settings from a config's ``eval`` section (a mapping or a dataclass instance).

        Keys that are neither fields nor settings of a registered metric (``save_predictions``,
        ``sw_batch_size`` ...) are ignored; a missing key keeps its default.
        """
        if is_dataclass(values) and not isinstance(values, type):
            values = {f.name: getattr(values, f.name) for f in fields(values)}
        own, declared = _own_fields(), declared_settings()
        return cls(
            **{k: v for k, v in values.items() if k in own},
            extra={k: v for k, v in values.items() if k in declared and k not in own},
        )


def _own_fields() -> tuple[str, ...]:
    return tuple(f.name for f in fields(MetricSettings) if f.name != "extra")
