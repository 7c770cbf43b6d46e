"""``interactive``: a click-taking network trained with simulated clicks (iterative training of
Mahadevan et al., BMVC 2018, https://arxiv.org/abs/1807.11251, and Sofiiuk et al., ICIP 2022,
RITM, https://arxiv.org/abs/2102.06583) and tested by the simulated user's click loop (NoC).

The network gets ``in_channels + 2`` input channels: the image, then the positive and the
negative click maps (:func:`bench.metrics.interactive.click_maps`, disks / balls of ``radius``
voxels); the runner builds it so from the registration's ``click_channels``. The object is
foreground class 1 (label == 1): clicks, ``dice_per_click`` and NoC concern that class only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from bench.metrics import METRICS, click_maps, dice, next_click, simulate_training_clicks
from models.registry import register_scheme
from models.schemes.base import TrainingScheme

CLICK_CHANNELS = 2
"""Extra input channels of the network: positive, negative click maps."""
INTERACTIVE = "interactive"  # the metrics protocol of the per-case keys (noc85, dice_at_k ...)
MIN_CLICKS = 5  # the registered keys go up to dice_at_5


def interactive_metrics(dice_per_click: list[float]) -> dict[str, float]:
    """Every registered metric of the ``interactive`` protocol of one case's Dice curve
    (``noc85``, ``noc90``, ``dice_at_1/3/5``: :mod:`bench.metrics.catalog.protocols`)."""
    return {m.name: float(m.fn(dice_per_click)) for m in METRICS.values() if m.protocol == INTERACTIVE}


def _object_dice(pred: np.ndarray, target: np.ndarray, fov: np.ndarray | None) -> float:
    """Dice of two binary masks, inside ``fov`` when given (NaN when both are empty)."""
    if fov is not None:
        pred, target = pred & fov, target & fov
    return float(dice(pred, target))


@register_scheme(
    INTERACTIVE,
    options="radius max_iters max_initial max_clicks",
    click_channels=CLICK_CHANNELS,
    description="click maps as 2 extra input channels; iterative simulated-click training; NoC test loop",
    paper="https://arxiv.org/abs/2102.06583",
)
class InteractiveScheme(TrainingScheme):
    """Iterative click training and the click loop at test time.

    Training, per sample: initial clicks ``simulate_training_clicks(target, None, rng)``, then
    ``n ~ U{0..max_iters}`` no-grad iterations (network in eval mode, as RITM) that each add one
    click on the error of the current prediction (``simulate_training_clicks(target, pred,
    rng)``), then the module's supervised loss on ``net(image ⊕ click maps)``. ``rng`` is
    ``np.random.default_rng([seed, step])``: ``seed`` the run's (``torch.initial_seed()`` when the
    scheme is attached, i.e. the seed ``lightning.seed_everything`` set), ``step`` the optimiser
    step, so a run's clicks are reproducible and differ from step to step.

    Test (:meth:`test_case`): see ``docs/schemes.md`` ("interactive").

    Args:
        radius: click disk / ball radius in voxels.
        max_iters: largest number of no-grad error-click iterations per training sample.
        max_initial: largest number of initial clicks of each sign in training.
        max_clicks: clicks of the test loop (>= 5, the registered ``dice_at_5``).
    """

    def __init__(self, radius: float = 5, max_iters: int = 3, max_initial: int = 5, max_clicks: int = 20):
        super().__init__()
        if radius < 0 or max_iters < 0 or max_initial < 1:
            raise ValueError(
                f"need radius >= 0, max_iters >= 0, max_initial >= 1; "
                f"got {radius}, {max_iters}, {max_initial}"
            )
        if max_clicks < MIN_CLICKS:
            raise ValueError(f"max_clicks must be >= {MIN_CLICKS} (dice_at_{MIN_CLICKS}), got {max_clicks}")
        self.radius = float(radius)
        self.max_iters = int(max_iters)
        self.max_initial = int(max_initial)
        self.max_clicks = int(max_clicks)
        self.seed = 0

    def attach(
        self, net: nn.Module, *, num_classes: int | None = None, spatial_dims: int | None = None
    ) -> None:
        """Takes the run's seed (``torch.initial_seed()``) for the click generator."""
        self.seed = int(torch.initial_seed())

    def rng(self) -> np.random.Generator:
        """The click generator of this optimiser step: ``default_rng([seed, step])``."""
        return np.random.default_rng([self.seed, int(self.step)])

    def with_clicks(self, image: torch.Tensor, clicks: list[list[Any]]) -> torch.Tensor:
        """``image (B, C, *spatial)`` with each sample's click maps appended: ``(B, C + 2, *spatial)``."""
        shape = tuple(image.shape[2:])
        maps = np.stack([click_maps(c, shape, radius=self.radius) for c in clicks])
        return torch.cat([image, torch.from_numpy(maps).to(image)], dim=1)

    def training_clicks(self, module: Any, image: torch.Tensor, target: np.ndarray) -> list[list[Any]]:
        """Each sample's clicks: initial ones, then the no-grad error iterations.

        Args:
            image: ``(B, in_channels, *patch)``.
            target: ``(B, *patch)`` bool object masks.
        """
        rng = self.rng()
        clicks = [simulate_training_clicks(t, None, rng, max_initial=self.max_initial) for t in target]
        iters = rng.integers(0, self.max_iters + 1, size=len(target))
        if iters.max(initial=0) == 0:
            return clicks
        was_training = module.net.training
        module.net.eval()
        try:
            with torch.no_grad():
                for it in range(int(iters.max())):
                    pred = _logits(module.net(self.with_clicks(image, clicks))).argmax(1) == 1
                    for b in np.flatnonzero(iters > it):
                        clicks[b] += simulate_training_clicks(target[b], pred[b].cpu().numpy(), rng)
        finally:
            module.net.train(was_training)
        return clicks

    def loss(self, module: Any, batch: dict[str, Any]) -> torch.Tensor:
        """The module's supervised loss on ``net(image ⊕ click maps)`` (see the class docstring)."""
        image = batch["image"]
        target = (batch["label"][:, 0] == 1).cpu().numpy()
        clicks = self.training_clicks(module, image, target)
        self._logged = {"clicks": float(np.mean([len(c) for c in clicks]))}
        return module.training_loss_supervised({**batch, "image": self.with_clicks(image, clicks)})

    def val_input(self, batch: dict[str, Any]) -> torch.Tensor:
        """Validation sees one click: image ⊕ the maps of the simulated user's first click on an
        empty prediction (``next_click``, inside ``fov``), so ``val_dice`` is the Dice after one
        click (cheap: one inference per case); none for a case without object."""
        image = batch["image"]
        target = (batch["label"][0, 0] == 1).cpu().numpy()
        fov = batch.get("fov")
        fov_np = None if fov is None else fov[0, 0].bool().cpu().numpy()
        click = next_click(np.zeros(target.shape, bool), target, fov=fov_np)
        return self.with_clicks(image, [[] if click is None else [click]])

    @torch.no_grad()
    def test_case(self, module: Any, batch: dict[str, Any]) -> dict[str, Any]:
        """The click loop on one whole case (``image (1, in_channels, *spatial)``).

        Click ``k = 1..max_clicks``: ``next_click`` on the error of the current prediction
        (before the first click: an empty prediction, so click 1 is positive, in the object),
        inside ``fov``; the prediction after click ``k`` is the sliding-window argmax of
        ``net(image ⊕ click maps)``; its Dice for class 1 (inside ``fov``) is ``dice_per_click[k
        - 1]``. No error left (``next_click`` None): no click, the Dice repeats.

        Returns:
            ``prob (C, *spatial)`` float32 CPU softmax after the last click, ``dice_per_click``
            (``max_clicks`` floats) and ``protocol_metrics`` (:func:`interactive_metrics`).
        """
        image = batch["image"]
        target = (batch["label"][0, 0] == 1).cpu().numpy()
        fov = batch.get("fov")
        fov_np = None if fov is None else fov[0, 0].bool().cpu().numpy()
        pred = np.zeros(target.shape, bool)
        clicks: list[Any] = []
        prob: torch.Tensor | None = None
        curve: list[float] = []
        for _ in range(self.max_clicks):
            click = next_click(pred, target, fov=fov_np)
            if click is not None or prob is None:
                clicks += [] if click is None else [click]
                prob = torch.softmax(module.predict_logits(self.with_clicks(image, [clicks])), dim=1)[0]
                pred = (prob.argmax(0) == 1).cpu().numpy()
                value = _object_dice(pred, target, fov_np)
            curve.append(value)
        return {
            "prob": prob.float().cpu(),
            "dice_per_click": curve,
            "protocol_metrics": interactive_metrics(curve),
        }


def _logits(out: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    return out["logits"] if isinstance(out, dict) else out


__all__ = ["CLICK_CHANNELS", "InteractiveScheme", "interactive_metrics"]
