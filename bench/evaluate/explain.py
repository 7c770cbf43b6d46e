"""``segbench explain``: saliency maps of a kept model for one class region of one case (Captum),
and the model-parameter randomisation check of Adebayo et al. (2018). See ``docs/explain.md``.

A segmentation network gives a logit per voxel and class; attribution needs one number. As in
Captum's segmentation tutorial, the network is wrapped so that its output is the sum of the
``target_class`` logits over a ``region`` (by default the predicted mask of that class):
``F(x) = sum_{p in region} net(x)[target_class, p]``. Every method explains that number.

Methods (all Captum, 2D and 3D):

- ``integrated_gradients``: ``n_steps`` points from a baseline ``b`` to ``x``, attributions summed
  over the input channels and kept SIGNED (completeness: the map sums to ``F(x) - F(b)``). The
  baseline (:func:`ig_baseline`) is ``blur`` by default: the image Gaussian-blurred per channel
  (sigma :data:`BLUR_SIGMA` voxels; Sturmfels et al., "Visualizing the Impact of Feature
  Attribution Baselines", Distill 2020). ``zeros`` is the classic black image, but a network
  whose first layer is instance-normalised (MONAI's U-Net) gives ``F(a x) = F(x)`` for every
  ``a > 0``: the whole integral sits in ``a`` near 0, between the quadrature's points, and the map
  misses most of ``F(x) - F(0)`` (the record's ``completeness_gap`` says by how much).
- ``gradcam``: ``LayerGradCam`` (ReLU of the channel-weighted layer output, so non-negative) on
  the layer that :func:`gradcam_layer` picks, upsampled to the image size with
  ``LayerAttribution.interpolate``.
- ``saliency``: absolute input gradients, summed over the input channels (non-negative).
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from bench.errors import UserError
from bench.evaluate.predict import find_model, load_model, make_datamodule, predict_case
from bench.records.explain_files import EXPLAIN_DIR, FIGURE, INFO
from bench.records.explain_files import explain_panels as explain_panels  # the report reads it there
from bench.records.store import DEFAULT_RESULTS

METHODS = ("integrated_gradients", "gradcam", "saliency")
"""Every method :func:`saliency` knows."""
DEFAULT_METHODS = ("integrated_gradients", "gradcam")
SANITY_THRESHOLD = 0.5
"""The randomisation check passes when ``|Spearman rho| < SANITY_THRESHOLD`` (trained vs randomised)."""
_CONV = (nn.Conv2d, nn.Conv3d)
PAD_MULTIPLE = 32
"""When the network's logits do not have the image's size (a U-Net on an odd-sized image such as
CHASE_DB1's 999x960), the image is zero-padded at the end of each axis to a multiple of this before
attribution (up to five 2x down-samplings then fit); the padding is outside the region and is
cropped off the maps."""


BASELINES = ("blur", "zeros")
"""Integrated gradients' baselines (:func:`ig_baseline`); the first is the default."""
BLUR_SIGMA = 5.0
"""Sigma in voxels of the ``blur`` baseline's Gaussian (fine structure such as vessels vanishes)."""


class ExplainError(UserError):
    """A bad run, case, class or method of ``segbench explain`` (one line naming it)."""


# ---- the scalar to explain ------------------------------------------------------------------


def _logits(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``net(x)`` as ``(B, C, *S)`` logits (the first output of a net that returns several)."""
    out = net(x)
    return out[0] if isinstance(out, (list, tuple)) else out


class RegionLogit(nn.Module):
    """``x (B, C_in, *S) -> (B,)``: the sum of ``net``'s ``target_class`` logits over ``region``
    (``(*S)`` bool; every voxel when None)."""

    def __init__(self, net: nn.Module, target_class: int, region: torch.Tensor | None) -> None:
        super().__init__()
        self.net = net
        self.target_class = int(target_class)
        self.region = region

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logit = _logits(self.net, x)[:, self.target_class]  # (B, *S)
        if self.region is not None:
            logit = logit * self.region.to(logit.dtype)
        return logit.flatten(1).sum(1)


def gradcam_layer(net: nn.Module, image: torch.Tensor) -> tuple[str, nn.Module]:
    """The layer GradCAM reads: the LAST ``Conv2d``/``Conv3d`` to run in a forward pass of
    ``image (1, C_in, *S)`` whose output has the image's spatial size ``S``; when none has it,
    the last convolution to run. Transposed convolutions do not count. Returns ``(name, module)``.

    Raises:
        ExplainError: the network has no ``Conv2d``/``Conv3d``.
    """
    names = {m: n for n, m in net.named_modules()}
    ran: list[tuple[nn.Module, tuple[int, ...]]] = []

    def hook(module: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        ran.append((module, tuple(out.shape[2:])))

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, _CONV)]
    try:
        with torch.no_grad():
            net(image)
    finally:
        for h in handles:
            h.remove()
    if not ran:
        raise ExplainError(f"{type(net).__name__}: no Conv2d/Conv3d layer for gradcam")
    full = [m for m, shape in ran if shape == tuple(image.shape[2:])]
    chosen = full[-1] if full else ran[-1][0]
    return names[chosen], chosen


def fit_input(
    net: nn.Module, image: torch.Tensor, region: torch.Tensor | np.ndarray | None
) -> tuple[torch.Tensor, torch.Tensor | None, tuple[int, ...]]:
    """``image (1, C_in, *S)`` and ``region (*S)`` as the attribution reads them, on the network's
    device: unchanged when the logits have the image's size, else zero-padded at the end of each axis
    to a multiple of :data:`PAD_MULTIPLE` (the region padded with False; a None region becomes the
    image's voxels). Returns ``(x, mask, S)``; maps computed on ``x`` are cropped back to ``S``."""
    device = next(net.parameters()).device
    size = tuple(image.shape[2:])
    pad = [0, 0] * len(size)  # F.pad order: last axis first, (before, after)
    probe = image.detach().to(device=device, dtype=torch.float32)
    with torch.no_grad():
        if tuple(_logits(net, probe).shape[2:]) != size:
            for i, n in enumerate(reversed(size)):
                pad[2 * i + 1] = -n % PAD_MULTIPLE
            padded = torch.nn.functional.pad(probe, pad)
            if tuple(_logits(net, padded).shape[2:]) != tuple(padded.shape[2:]):
                pad = [0] * len(pad)  # not a size question (e.g. logits at another resolution)
    x = torch.nn.functional.pad(probe, pad)
    mask = None
    if region is not None:
        mask = torch.nn.functional.pad(torch.as_tensor(region, dtype=torch.bool, device=device), pad)
    elif any(pad):
        mask = torch.nn.functional.pad(torch.ones(size, dtype=torch.bool, device=device), pad)
    return x, mask, size


def check_baseline(kind: str, sigma: float = BLUR_SIGMA) -> None:
    """Raises :class:`ExplainError` for a ``kind`` not in :data:`BASELINES`, or a ``blur`` whose
    ``sigma`` is not positive."""
    if kind not in BASELINES:
        raise ExplainError(f"--baseline {kind!r}: not one of {', '.join(BASELINES)}")
    if kind == "blur" and not sigma > 0:
        raise ExplainError(f"--blur-sigma: must be > 0, got {sigma}")


def ig_baseline(x: torch.Tensor, kind: str = BASELINES[0], sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """Integrated gradients' baseline for ``x (1, C_in, *S)``: ``zeros``, or ``blur``: each channel
    Gaussian-filtered over the spatial axes (``scipy.ndimage.gaussian_filter``, ``sigma`` voxels,
    mode ``nearest``). Same shape, dtype and device as ``x``.

    Raises:
        ExplainError: an unknown ``kind`` or a ``sigma`` that is not positive.
    """
    check_baseline(kind, sigma)
    if kind == "zeros":
        return torch.zeros_like(x)
    from scipy.ndimage import gaussian_filter

    arr = x.detach().float().cpu().numpy()
    blurred = gaussian_filter(arr, sigma=(0, 0) + (float(sigma),) * (arr.ndim - 2), mode="nearest")
    return torch.from_numpy(blurred).to(device=x.device, dtype=x.dtype)


def saliency(
    net: nn.Module,
    image: torch.Tensor,
    *,
    target_class: int,
    region: torch.Tensor | None = None,
    method: str,
    n_steps: int = 32,
    internal_batch_size: int | None = None,
    layer: str | None = None,
    baseline: str = BASELINES[0],
    blur_sigma: float = BLUR_SIGMA,
) -> np.ndarray:
    """The attribution map ``(*S)`` float32 of the summed ``target_class`` logit over ``region``.

    Args:
        net: a segmentation network ``(B, C_in, *S) -> (B, C, *S)`` logits (put in eval mode).
        image: ``(1, C_in, *S)`` float, as the network was trained on (zero-padded to a multiple of
            :data:`PAD_MULTIPLE` when the logits' size differs from it, the maps cropped back to ``S``).
        target_class: the class whose logits are summed.
        region: ``(*S)`` bool; None: the whole image.
        method: one of :data:`METHODS` (signs: see the module docstring).
        n_steps: integrated gradients' number of points.
        baseline, blur_sigma: integrated gradients' baseline (:func:`ig_baseline`), built on the
            padded input.
        internal_batch_size: integrated gradients' batch of points (None: all at once).
        layer: gradcam's layer by module name (None: :func:`gradcam_layer`).

    Raises:
        ExplainError: an unknown method or layer name.
    """
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Saliency

    net = net.eval()
    x, mask, size = fit_input(net, image, region)
    x = x.requires_grad_()
    scalar = RegionLogit(net, target_class, mask)
    with torch.enable_grad():
        if method == "integrated_gradients":
            ig = IntegratedGradients(scalar)
            base = ig_baseline(x, baseline, blur_sigma)
            attr = ig.attribute(x, baselines=base, n_steps=n_steps, internal_batch_size=internal_batch_size)
            out = attr.sum(1)[0]
        elif method == "saliency":
            out = Saliency(scalar).attribute(x, abs=True).sum(1)[0]
        elif method == "gradcam":
            module = _named_layer(net, layer) if layer else gradcam_layer(net, x)[1]
            cam = LayerGradCam(scalar, module).attribute(x, relu_attributions=True)  # (1, 1, *S_layer)
            mode = "bilinear" if x.ndim == 4 else "trilinear"
            out = LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode=mode)[0, 0]
        else:
            raise ExplainError(f"method {method!r}: not one of {', '.join(METHODS)}")
    crop = tuple(slice(0, n) for n in size)  # the padding back off: the image's own voxels
    return out[crop].detach().cpu().numpy().astype(np.float32)


def _named_layer(net: nn.Module, name: str) -> nn.Module:
    modules = dict(net.named_modules())
    if name not in modules:
        raise ExplainError(f"layer {name!r}: not a module of {type(net).__name__}")
    return modules[name]


# ---- the sanity check (Adebayo et al. 2018) --------------------------------------------------


def randomise_weights(net: nn.Module, seed: int = 0) -> nn.Module:
    """A deep copy of ``net`` with every layer that has ``reset_parameters()`` re-initialised
    (seeded; ``net`` and the global RNG are left as they were)."""
    fresh = copy.deepcopy(net)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in fresh.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
    return fresh.eval()


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho of two 1D arrays; NaN when either is constant or shorter than 3."""
    from scipy.stats import spearmanr

    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y)[0])


def map_similarity(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> dict[str, float]:
    """How alike two maps ``a``, ``b`` (same shape ``(*S)``) are, on their absolute values.

    Returns:
        ``spearman``: Spearman's rho over the voxels of ``region`` (``(*S)`` bool; None: every
        voxel); ``spearman_image``: rho over every voxel; ``ssim``: SSIM of the whole maps, each
        divided by its maximum (``data_range`` 1). A rho is NaN when a map is constant there.
    """
    from skimage.metrics import structural_similarity

    x, y = np.abs(a).astype(np.float64), np.abs(b).astype(np.float64)
    inside = np.ones(x.shape, bool) if region is None else np.asarray(region, bool)
    xn, yn = x / (x.max() or 1.0), y / (y.max() or 1.0)
    win = max(3, min(7, *(s if s % 2 else s - 1 for s in x.shape)))
    return {
        "spearman": _spearman(x[inside], y[inside]),
        "spearman_image": _spearman(x.ravel(), y.ravel()),
        "ssim": float(structural_similarity(xn, yn, data_range=1.0, win_size=win)),
    }


def randomisation_check(
    net: nn.Module,
    image: torch.Tensor,
    *,
    target_class: int,
    region: torch.Tensor | None = None,
    method: str,
    seed: int = 0,
    threshold: float = SANITY_THRESHOLD,
    randomised: nn.Module | None = None,
    trained_map: np.ndarray | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Model-parameter randomisation (Adebayo et al. 2018): the map of ``net`` against the map of
    ``randomised`` (None: :func:`randomise_weights` ``(net, seed)``) for the same image, class and
    region. A map that explains the model must change when its weights are random.

    The verdict reads Spearman's rho of the absolute maps INSIDE the region (the whole image when
    ``region`` is None): outside it, every network of the architecture gives the same footprint
    (zero beyond the region's receptive field, decaying towards it), which alone makes the
    whole-image rho high; that rho is reported as ``spearman_image`` (see docs/explain.md).

    Returns:
        ``{method, spearman, spearman_image, ssim, threshold, seed, passed}``: ``passed`` when
        ``|spearman| < threshold``; False when rho is undefined (a constant map in the region).
    """
    other = randomise_weights(net, seed) if randomised is None else randomised
    common = {"target_class": target_class, "region": region, "method": method, **kwargs}
    mine = trained_map if trained_map is not None else saliency(net, image, **common)
    theirs = saliency(other, image, **common)
    sim = map_similarity(mine, theirs, None if region is None else np.asarray(torch.as_tensor(region).cpu()))
    rho = sim["spearman"]
    passed = bool(math.isfinite(rho) and abs(rho) < threshold)
    return {"method": method, **sim, "threshold": threshold, "seed": seed, "passed": passed}


# ---- a run's case ------------------------------------------------------------------------------


@dataclass
class Explanation:
    """What :func:`explain` wrote: the folder, one map file per method, the figure, the info."""

    folder: Path
    maps: dict[str, Path] = field(default_factory=dict)
    figure: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)


def parse_methods(text: str | Sequence[str]) -> list[str]:
    """``"integrated_gradients,gradcam"`` -> the list, checked.

    Raises:
        ExplainError: an unknown or missing method (named).
    """
    items = [m.strip() for m in text.split(",")] if isinstance(text, str) else [str(m) for m in text]
    items = [m for m in items if m]
    if not items:
        raise ExplainError(f"--methods: give at least one of {', '.join(METHODS)}")
    for m in items:
        if m not in METHODS:
            raise ExplainError(f"--methods: unknown method {m!r} (known: {', '.join(METHODS)})")
    return list(dict.fromkeys(items))


def _find_case(dm: Any, run_id: str, case_id: str) -> str:
    """The split that holds ``case_id`` in the run's dataset."""
    for split, ids in dm.splits.items():
        if case_id in ids:
            return split
    every = sorted({c for ids in dm.splits.values() for c in ids})
    shown = ", ".join(every[:5]) + (" ..." if len(every) > 5 else "")
    raise ExplainError(
        f"--case {case_id!r}: not a case of run {run_id}'s dataset {dm.name} ({len(every)} cases: {shown})"
    )


@dataclass
class CaseRegion:
    """One case of a run's dataset and the region to explain: ``image (C_in, *S)`` float32,
    ``region (*S)`` bool, where the region came from (``prediction`` or ``label``), the split."""

    image: np.ndarray
    region: np.ndarray
    region_from: str
    split: str


def case_region(model: Any, case_id: str, target_class: int) -> CaseRegion:
    """``case_id`` of ``model``'s own dataset (any split, built as ``segbench predict --dataset``
    builds it) and the predicted mask of ``target_class`` (the test loop's inference and the run's
    ``eval.postprocess``); the label's mask of the class when nothing of it is predicted.

    Raises:
        ExplainError: the case is not in the dataset, or the class is in neither mask.
    """
    from models.inference import postprocess

    dm = make_datamodule(model)
    dm.setup("test")
    split = _find_case(dm, model.run_id, case_id)
    case = dm.case(case_id)
    image = np.asarray(case.image, dtype=np.float32)
    prob = predict_case(model, image)
    pred = postprocess(prob.argmax(0), prob.shape[0], model.module.postprocess)
    if (pred == target_class).any():
        return CaseRegion(image, pred == target_class, "prediction", split)
    region = np.asarray(case.label) == target_class
    if not region.any():
        raise ExplainError(f"--class {target_class}: in neither the prediction nor the label of {case_id}")
    print(
        f"explain {model.run_id} {case_id}: class {target_class} is not predicted; explaining the "
        "label's region instead",
        file=sys.stderr,
    )
    return CaseRegion(image, region, "label", split)


def _completeness(
    net: nn.Module, x: torch.Tensor, cls: int, mask: torch.Tensor, ig: np.ndarray, baseline: str, sigma: float
) -> dict:
    """``F(x) - F(b)`` and the gap ``sum(ig) - (F(x) - F(b))`` of an integrated gradients map, also
    as a fraction of ``|F(x) - F(b)|``."""
    xf, mf, _ = fit_input(net, x, mask)
    scalar = RegionLogit(net, cls, mf)
    with torch.no_grad():
        gain = float(scalar(xf) - scalar(ig_baseline(xf, baseline, sigma)))
    gap = float(ig.sum(dtype=np.float64)) - gain
    return {
        "f_difference": gain,
        "completeness_gap": gap,
        "completeness_gap_relative": abs(gap) / abs(gain) if gain else None,
    }


def explain(
    run: str | os.PathLike[str],
    case_id: str,
    *,
    results: str | os.PathLike[str] = DEFAULT_RESULTS,
    methods: str | Sequence[str] = DEFAULT_METHODS,
    target_class: int | None = None,
    n_steps: int = 32,
    baseline: str = BASELINES[0],
    blur_sigma: float = BLUR_SIGMA,
    sanity: bool = False,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> Explanation:
    """Saliency maps of ``run``'s kept model (a run id of ``results`` or a model folder) for
    ``case_id`` of the run's own dataset, written to ``<results>/explain/<run_id>/<case_id>/``:
    ``<method>.npy`` (float32, the image's spatial shape), ``explain.png`` and ``explain.json``.

    The region is :func:`case_region`'s, for ``target_class`` (default 1, the first foreground
    class). ``sanity`` adds :func:`randomisation_check` for every method (seed ``seed``).

    Raises:
        ExplainError: an unknown method, a bad ``n_steps``, a class out of range, a case not in
            the dataset, or a class in neither the prediction nor the label.
        PredictError: a bad run (no record, no kept weights, changed weights).
    """
    import captum

    chosen = parse_methods(methods)
    if n_steps < 1:
        raise ExplainError(f"--steps: must be >= 1, got {n_steps}")
    check_baseline(baseline, blur_sigma)  # a bad baseline stops here, not after loading the model
    model = load_model(find_model(run, results), device)
    num_classes = int(model.data["num_classes"])
    cls = 1 if target_class is None else int(target_class)
    if not 0 <= cls < num_classes:
        raise ExplainError(f"--class {cls}: run {model.run_id} has classes 0..{num_classes - 1}")
    found = case_region(model, case_id, cls)
    net = model.module.net.eval()
    x, mask = torch.from_numpy(found.image)[None], torch.from_numpy(found.region)
    settings: dict[str, dict[str, Any]] = {
        "integrated_gradients": {
            "n_steps": n_steps,
            "baseline": baseline,
            **({"blur_sigma": blur_sigma} if baseline == "blur" else {}),
            "signed": True,
        },
        "gradcam": {"layer": gradcam_layer(net, x.to(device))[0], "signed": False},
        "saliency": {"abs": True, "signed": False},
    }
    folder = Path(results) / EXPLAIN_DIR / model.run_id / case_id
    folder.mkdir(parents=True, exist_ok=True)
    out = Explanation(folder)
    maps: dict[str, np.ndarray] = {}
    checks: dict[str, Any] = {}
    work = [(m, False) for m in chosen] + ([(m, True) for m in chosen] if sanity else [])
    bar = tqdm(work, desc=f"explain {model.run_id} {case_id}", disable=not progress or len(work) < 3)
    for method, check in bar:
        kw = {"target_class": cls, "region": mask, "method": method, "n_steps": n_steps}
        kw.update(baseline=baseline, blur_sigma=blur_sigma)
        if check:
            checks[method] = randomisation_check(net, x, seed=seed, trained_map=maps[method], **kw)
            continue
        maps[method] = saliency(net, x, **kw)
        out.maps[method] = folder / f"{method}.npy"
        np.save(out.maps[method], maps[method])
    if "integrated_gradients" in maps:
        settings["integrated_gradients"].update(
            _completeness(net, x, cls, mask, maps["integrated_gradients"], baseline, blur_sigma)
        )
    title = f"{model.run_id} {case_id} class {cls}"
    out.figure = write_figure(folder / FIGURE, found.image, found.region, maps, title=title)
    out.info = {
        "run_id": model.run_id,
        "case_id": case_id,
        "split": found.split,
        "class": cls,
        "class_name": _class_name(model.data, cls),
        "region_from": found.region_from,
        "region_voxels": int(found.region.sum()),
        "image_shape": list(found.image.shape[1:]),
        "methods": {m: settings[m] for m in chosen},
        "maps": {m: p.name for m, p in out.maps.items()},
        "figure": FIGURE,
        "captum_version": captum.__version__,
        "sanity": checks or None,
    }
    (folder / INFO).write_text(json.dumps(out.info, indent=1))
    return out


def _class_name(data: dict[str, Any], cls: int) -> str | None:
    names = list(data.get("class_names") or [])
    return str(names[cls]) if cls < len(names) else None


# ---- the figure and the report hook ----------------------------------------------------------------


def _slice_of(region: np.ndarray) -> int | None:
    """3D: the index along the last axis where ``region`` has most voxels; 2D: None."""
    if region.ndim == 2:
        return None
    return int(region.reshape(-1, region.shape[-1]).sum(0).argmax())


def display_image(image: np.ndarray) -> np.ndarray:
    """``image (C_in, *S)`` -> what the figure shows: three channels as an RGB ``(*S, 3)``, otherwise
    the first channel ``(*S)``, each scaled to [0, 1] between the 1st and 99th percentiles of its
    values above its minimum (a black border or field-of-view mask does not set the contrast)."""

    def scaled(a: np.ndarray) -> np.ndarray:
        body = a[a > a.min()]
        lo, hi = np.percentile(body, (1, 99)) if body.size else (a.min(), a.max())
        return np.clip((a - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(a, dtype=float)

    if image.shape[0] == 3:
        return np.stack([scaled(c) for c in image], axis=-1)
    return scaled(image[0])


def write_figure(
    path: Path, image: np.ndarray, region: np.ndarray, maps: dict[str, np.ndarray], *, title: str = ""
) -> Path:
    """A PNG: the image (:func:`display_image`) with the region's outline, then each map (signed
    maps in red / blue around a white zero, both scaled to the 99.5th percentile of ``|map|`` so
    that a few extreme voxels do not wash the rest out; non-negative maps from 0 to their 99.5th
    percentile), the outline faint on the maps. ``image (C_in, *S)``, ``region (*S)`` bool, maps
    ``(*S)``; 3D: the slice along the last axis where the region has most voxels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = _slice_of(region)
    cut = (lambda a: a) if k is None else (lambda a: a[..., k])
    shown = display_image(image if k is None else image[..., k])
    panels = [("image", shown)] + [(m, cut(v)) for m, v in maps.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.3), squeeze=False)
    for ax, (name, arr) in zip(axes[0], panels, strict=True):
        if name == "image":
            ax.imshow(arr, cmap=None if arr.ndim == 3 else "gray", vmin=0, vmax=1)
        elif arr.min() < 0:  # signed (integrated gradients): red positive, blue negative, 0 white
            top = float(np.percentile(np.abs(arr), 99.5)) or float(np.abs(arr).max()) or 1.0
            ax.imshow(arr, cmap="RdBu_r", vmin=-top, vmax=top)
        else:
            top = float(np.percentile(arr, 99.5)) or float(arr.max()) or 1.0
            ax.imshow(arr, cmap="magma", vmin=0, vmax=top)
        if cut(region).any():
            style = (
                {"linewidths": 0.6, "alpha": 0.9} if name == "image" else {"linewidths": 0.3, "alpha": 0.35}
            )
            ax.contour(cut(region).astype(float), levels=[0.5], colors="cyan", **style)
        ax.set_title(name if k is None else f"{name} (slice {k})", fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path
