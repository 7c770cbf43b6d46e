"""Mamba (selective state-space) layer in pure PyTorch, with ``mamba_ssm.Mamba``'s weight layout.

Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", 2023,
https://arxiv.org/abs/2312.00752.

``MambaMixer`` holds exactly the parameters of ``mamba_ssm.Mamba`` (``in_proj``, ``conv1d``,
``x_proj``, ``dt_proj``, ``A_log``, ``D``, ``out_proj``; same shapes, no extras), so a state
dict moves between the two. Its selective scan runs on the CUDA kernel of ``mamba_ssm``
(``selective_scan_fn``, the kernel ``mamba_ssm.Mamba`` runs) when that package is importable
and the input is on CUDA, and otherwise on a pure-PyTorch parallel scan
(``mambapy.pscan``, Blelloch), optionally in checkpointed chunks to bound memory.

``SpatialMambaLayer`` turns a feature map ``(B, C, *spatial)`` into ``prod(spatial)`` tokens
(row-major flattening) and applies ``x + Mamba(LayerNorm(x))``, as U-Mamba does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from mambapy.pscan import pscan
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.layers.tokens import from_tokens, to_tokens

try:  # the fused CUDA kernel behind mamba_ssm.Mamba
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _cuda_scan
except ImportError:  # pragma: no cover - depends on the install
    _cuda_scan = None


def _scan_chunk(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    h0: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Parallel scan of one chunk from state ``h0``; returns ``(C_t h_t)`` and the last state."""
    decay = torch.exp(delta.unsqueeze(-1) * A)  # (B, L, ED, N)
    drive = (delta * u).unsqueeze(-1) * B.unsqueeze(2)  # (B, L, ED, N)
    if h0 is not None:  # fold the carried state into the first step: h_0 = a_0 h0 + b_0
        drive[:, 0] += decay[:, 0] * h0  # in place on a fresh tensor: no copy of the chunk
    h = pscan(decay, drive)  # (B, L, ED, N)
    y = torch.einsum("blen,bln->ble", h, C)
    return y, h[:, -1].clone()  # clone: a view would keep the whole (B, L, ED, N) state alive


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Selective scan ``h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t``, ``y_t = C_t h_t + D u_t``, ``h_{-1} = 0``.

    Pure PyTorch (parallel scan). With ``chunk_size`` the sequence is scanned in chunks whose
    ``(B, chunk, ED, N)`` intermediates are recomputed in the backward pass (activation
    checkpointing), so memory grows with ``B·L·ED`` instead of ``B·L·ED·N``.

    Args:
        u: ``(B, L, ED)`` input.
        delta: ``(B, L, ED)`` positive step sizes Δ.
        A: ``(ED, N)`` negative state matrix (diagonal per channel).
        B: ``(B, L, N)`` input matrix.
        C: ``(B, L, N)`` output matrix.
        D: ``(ED,)`` skip weight.
        chunk_size: scan in checkpointed chunks of this length (``None``: one pass).

    Returns:
        ``(B, L, ED)`` output.
    """
    length = u.shape[1]
    if chunk_size is None or chunk_size >= length:
        y, _ = _scan_chunk(u, delta, A, B, C, None)
    else:
        outs, h = [], None
        for s in range(0, length, chunk_size):
            sl = slice(s, s + chunk_size)
            args = (u[:, sl], delta[:, sl], A, B[:, sl], C[:, sl], h)
            if torch.is_grad_enabled():
                y_c, h = checkpoint(_scan_chunk, *args, use_reentrant=False)
            else:
                y_c, h = _scan_chunk(*args)
            outs.append(y_c)
        y = torch.cat(outs, dim=1)
    return y + u * D


class MambaMixer(nn.Module):
    """One Mamba block (Gu & Dao 2023) on token sequences, parameters as in ``mamba_ssm.Mamba``.

    Args:
        d_model: token width D.
        d_state: SSM state size N.
        d_conv: causal depthwise convolution width.
        expand: inner width factor E (ED = E·D).
        dt_rank: rank of the Δ projection (``"auto"``: ``ceil(D / 16)``).
        dt_min: smallest initial Δ.
        dt_max: largest initial Δ.
        dt_init_floor: lower clamp of the initial Δ.
        scan_chunk: chunk length of the pure-PyTorch scan (``None``: whole sequence at once).
        use_kernel: ``"auto"`` (mamba_ssm kernel when importable and on CUDA), ``"torch"``
            (always pure PyTorch) or ``"cuda"`` (always the kernel; fails without it).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        scan_chunk: int | None = None,
        use_kernel: str = "auto",
    ) -> None:
        super().__init__()
        if use_kernel not in ("auto", "torch", "cuda"):
            raise ValueError(f"use_kernel must be 'auto', 'torch' or 'cuda', not {use_kernel!r}")
        self.d_state, self.scan_chunk, self.use_kernel = d_state, scan_chunk, use_kernel
        d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1, bias=True)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner, bias=True)
        self.A_log = nn.Parameter(
            torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1)
        )
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)
        self._init_dt(dt_min, dt_max, dt_init_floor)

    @torch.no_grad()
    def _init_dt(self, dt_min: float, dt_max: float, floor: float) -> None:
        """mamba_ssm's Δ initialisation: softplus(bias) log-uniform in [dt_min, dt_max]."""
        bound = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -bound, bound)
        n = self.dt_proj.bias.numel()
        dt = torch.exp(torch.rand(n) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus

    def _kernel_wanted(self, x: torch.Tensor) -> bool:
        if self.use_kernel == "torch":
            return False
        if self.use_kernel == "cuda":
            if _cuda_scan is None:
                raise RuntimeError("use_kernel='cuda' needs the mamba_ssm package")
            return True
        return _cuda_scan is not None and x.is_cuda

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map tokens ``(B, L, D)`` to ``(B, L, D)``."""
        length = x.shape[1]
        xs, z = self.in_proj(x).chunk(2, dim=-1)  # (B, L, ED) each
        xs = F.silu(self.conv1d(xs.transpose(1, 2))[..., :length])  # (B, ED, L), causal
        dt, b, c = self.x_proj(xs.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = dt @ self.dt_proj.weight.t()  # (B, L, ED); bias added inside the scan
        A = -torch.exp(self.A_log.float())
        if self._kernel_wanted(x):
            y = _cuda_scan(
                xs.contiguous(),
                dt.transpose(1, 2).contiguous(),
                A,
                b.transpose(1, 2).contiguous(),
                c.transpose(1, 2).contiguous(),
                self.D.float(),
                z=z.transpose(1, 2).contiguous(),
                delta_bias=self.dt_proj.bias.float(),
                delta_softplus=True,
            ).transpose(1, 2)
        else:
            delta = F.softplus(dt + self.dt_proj.bias)
            y = selective_scan(xs.transpose(1, 2), delta, A, b, c, self.D.float(), self.scan_chunk)
            y = y * F.silu(z)
        return self.out_proj(y)


class SpatialMambaLayer(nn.Module):
    """``x + Mamba(LayerNorm(x))`` over the flattened spatial positions of a feature map.

    Runs in float32 (autocast off), as the selective scan is unstable in half precision.

    Args:
        channels: feature channels C (the token width).
        d_state: SSM state size.
        d_conv: causal convolution width.
        expand: inner width factor.
        scan_chunk: chunk length of the pure-PyTorch scan (``None``: whole sequence).
        use_kernel: see ``MambaMixer``.
    """

    def __init__(
        self,
        channels: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        scan_chunk: int | None = None,
        use_kernel: str = "auto",
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.mamba = MambaMixer(
            channels,
            d_state=d_state,
            d_conv=d_conv,
            expand=expand,
            scan_chunk=scan_chunk,
            use_kernel=use_kernel,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, C, *spatial)`` to the same shape."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            tokens = to_tokens(x.float())  # (B, L, C)
            out = tokens + self.mamba(self.norm(tokens))
        return from_tokens(out, x.shape[2:]).to(x.dtype)
