"""Betti errors of one class: ``betti{i}_err`` on the crop (Betti numbers computed once for all
dimensions) and the patch-wise ``betti{i}_err_patch`` on the full masks (the patch grid starts
at the image origin), computed when ``MetricSettings.betti_patch`` is set."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bench.metrics.context import ClassContext
from bench.metrics.registry import register_metric
from bench.metrics.topology import _global_betti_errors, _patch_betti_errors, _patch_slices

_WHAT = (
    "connected components",
    "loops (2D) / tunnels (3D)",
    "cavities (3D)",
)
_EMPTY = "an empty mask has β = 0, so always finite"


def _check_patch(shape: tuple[int, ...], *, betti_patch: int | Sequence[int]) -> None:
    """Raises ``ValueError`` unless ``betti_patch`` fits an image of ``shape``."""
    _patch_slices(shape, betti_patch)


def _global(i: int) -> Callable[[ClassContext], float]:
    def betti_err(ctx: ClassContext) -> float:
        return ctx.memo("betti_errors", lambda: _global_betti_errors(ctx.pred, ctx.target, None))[
            f"betti{i}_err"
        ]

    return betti_err


def _patch(i: int) -> Callable[..., float]:
    def betti_err_patch(ctx: ClassContext, *, betti_patch: int | Sequence[int]) -> float:
        assert ctx.pred_full is not None and ctx.target_full is not None
        errors = ctx.memo(
            "betti_errors_patch",
            lambda: _patch_betti_errors(ctx.pred_full, ctx.target_full, betti_patch, None),
        )
        return errors[f"betti{i}_err_patch"]

    return betti_err_patch


for _i, _what in enumerate(_WHAT):
    _ndims = (2, 3) if _i < 2 else (3,)
    register_metric(
        f"betti{_i}_err",
        higher_is_better=False,
        worst=float("inf"),
        bounds=(0.0, float("inf")),
        description=f"|Betti-{_i} difference|: {_what}",
        empty=_EMPTY,
        ndims=_ndims,
        position=40 + _i,
    )(_global(_i))
for _i in range(3):
    register_metric(
        f"betti{_i}_err_patch",
        higher_is_better=False,
        worst=float("inf"),
        bounds=(0.0, float("inf")),
        description=f"Betti-{_i} error, mean over patches",
        empty=_EMPTY,
        settings=("betti_patch",),
        ndims=(2, 3) if _i < 2 else (3,),
        requires="betti_patch",
        full_image=True,
        check=_check_patch,
        position=50 + _i,
    )(_patch(_i))
