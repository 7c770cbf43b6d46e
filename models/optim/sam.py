"""Sharpness-aware minimisation (SAM, Foret et al. ICLR 2021) and its adaptive variant (ASAM).

SAM minimises ``max_{||e|| <= rho} L(w + e)``. Each update takes two gradients of the same batch:

1. at ``w``: ``g = dL/dw``; climb to ``w + e`` with ``e = rho * g / ||g||_2``
   (Foret et al., https://arxiv.org/abs/2010.01412, Eq. 2 with ``p = 2``);
2. at ``w + e``: ``g_sam = dL/dw |_(w + e)``; restore ``w`` and step the base optimiser with ``g_sam``
   (the paper's Algorithm 1).

ASAM (Kwon et al. ICML 2021, https://arxiv.org/abs/2102.11600, element-wise
``T_w = |w| + eta``) rescales the climb: ``e = rho * T_w^2 g / ||T_w g||_2``.

Use with manual optimisation (two forward/backward passes per batch)::

    opt = SAM(net.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
    loss_fn(net(x), y).backward()
    opt.first_step(zero_grad=True)
    loss_fn(net(x), y).backward()
    opt.second_step(zero_grad=True)

or with ``opt.step(closure)``, where ``closure`` zeroes the gradients, runs forward and backward and
returns the loss (it is called twice).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

_NORM_EPS = 1e-12


class SAMStateError(RuntimeError):
    """``first_step``/``second_step`` were called out of order."""


class SAM(torch.optim.Optimizer):
    """SAM / ASAM wrapper around any ``torch.optim.Optimizer`` class.

    The base optimiser shares this wrapper's ``param_groups``, so learning-rate schedulers built on
    the wrapper change the base optimiser's learning rate too.

    Args:
        params: parameters or parameter groups (as for any torch optimiser).
        base_optimizer_cls: the optimiser that makes the descent step, e.g. ``torch.optim.SGD``.
        rho: neighbourhood radius ``rho >= 0`` (paper default 0.05; 0 gives the base optimiser).
        adaptive: ASAM's scale-invariant climb with ``T_w = |w| + eta``.
        eta: ASAM's offset keeping the climb non-zero for zero weights (only with ``adaptive``;
            Kwon et al.'s reference code uses 0.01 on weight tensors).
        **base_kwargs: keyword arguments of ``base_optimizer_cls`` (``lr``, ``momentum`` ...).

    Raises:
        ValueError: for ``rho < 0`` or ``eta < 0``.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        base_optimizer_cls: type[torch.optim.Optimizer],
        rho: float = 0.05,
        adaptive: bool = False,
        eta: float = 0.0,
        **base_kwargs: Any,
    ) -> None:
        if rho < 0:
            raise ValueError(f"SAM: rho must be >= 0, got {rho}")
        if eta < 0:
            raise ValueError(f"SAM: eta must be >= 0, got {eta}")
        super().__init__(params, dict(rho=rho, adaptive=adaptive, eta=eta, **base_kwargs))
        self.base_optimizer = base_optimizer_cls(self.param_groups, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)
        self._phase = {"climbed": False}  # mutated in place: shared with wrappers that copy __dict__

    def _scale(self, p: torch.Tensor, group: dict[str, Any]) -> torch.Tensor | float:
        """ASAM's ``T_w`` for one parameter (1 for plain SAM)."""
        return p.abs() + group["eta"] if group["adaptive"] else 1.0

    @torch.no_grad()
    def _grad_norm(self) -> torch.Tensor:
        """``||T_w g||_2`` over every parameter that has a gradient (one global norm)."""
        norms = [
            (self._scale(p, group) * p.grad).norm(p=2)
            for group in self.param_groups
            for p in group["params"]
            if p.grad is not None
        ]
        if not norms:
            return torch.zeros(())
        device = norms[0].device
        return torch.stack([n.to(device) for n in norms]).norm(p=2)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Climb from ``w`` to ``w + e(w)`` using the gradients in ``p.grad`` (taken at ``w``).

        Raises:
            SAMStateError: when called twice without ``second_step`` in between.
        """
        if self._phase["climbed"]:
            raise SAMStateError("SAM.first_step called twice; call second_step after each first_step")
        grad_norm = self._grad_norm()
        for group in self.param_groups:
            scale = group["rho"] / (grad_norm + _NORM_EPS)
            for p in group["params"]:
                if p.grad is None:
                    continue
                t = self._scale(p, group)
                e = (t * t) * p.grad * scale.to(p.device)
                p.add_(e)
                self.state[p]["e_w"] = e
        self._phase["climbed"] = True
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Restore ``w`` and step the base optimiser with the gradients taken at ``w + e``.

        Raises:
            SAMStateError: when ``first_step`` was not called before.
        """
        if not self._phase["climbed"]:
            raise SAMStateError("SAM.second_step called without first_step")
        for group in self.param_groups:
            for p in group["params"]:
                e = self.state[p].pop("e_w", None)
                if e is not None:
                    p.sub_(e)
        self._phase["climbed"] = False
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:  # type: ignore[override]
        """One full SAM update. ``closure`` zeroes the gradients, runs forward + backward and returns
        the loss; it is called at ``w`` and again at ``w + e``.

        Returns:
            the loss at ``w`` (the first closure call).

        Raises:
            ValueError: without a closure (SAM needs two gradient evaluations).
        """
        if closure is None:
            raise ValueError("SAM.step needs a closure (or call first_step/second_step yourself)")
        closure = torch.enable_grad()(closure)
        loss = closure()
        self.first_step(zero_grad=True)
        closure()
        self.second_step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        """The base optimiser's state (momentum buffers ...) and the shared param groups (with ``rho``).

        Raises:
            SAMStateError: between ``first_step`` and ``second_step`` (the weights are at ``w + e``).
        """
        if self._phase["climbed"]:
            raise SAMStateError("SAM.state_dict called between first_step and second_step")
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a :meth:`state_dict` into the base optimiser and re-share its param groups."""
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups


@contextmanager
def frozen_norm_stats(module: nn.Module) -> Iterator[None]:
    """Keep batch-norm running statistics unchanged inside the block (for SAM's second pass at
    ``w + e``, so each batch updates them once, at ``w``). Normalisation in training mode still
    uses the batch statistics.
    """
    saved = {}
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            saved[m] = (m.momentum, m.num_batches_tracked.clone())
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in saved.items():
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)
