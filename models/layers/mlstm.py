"""The mLSTM cell (matrix-memory xLSTM) and Vision-LSTM (ViL) blocks over token sequences.

- mLSTM: Beck et al., "xLSTM: Extended Long Short-Term Memory", NeurIPS 2024,
  https://arxiv.org/abs/2405.04517 — matrix memory ``C_t = f_t C_{t-1} + i_t v_t k_t^T``,
  normaliser ``n_t = f_t n_{t-1} + i_t k_t``, exponential input gate, sigmoid forget gate and a
  max-stabiliser ``m_t``; output ``h_t = C_t q_t / max(|n_t^T q_t|, 1)``.
- ViL: Alkin et al., "Vision-LSTM: xLSTM as Generic Vision Backbone", 2024,
  https://arxiv.org/abs/2406.04303 — mLSTM layers over flattened patch tokens whose scan
  direction alternates from block to block (forward, reversed, forward, ...).

The cell is written three times in pure PyTorch: :func:`mlstm_parallel` (quadratic,
attention-like), :func:`mlstm_chunkwise` (parallel inside chunks, recurrent between them: memory
linear in the sequence length, used for long token sequences) and :func:`mlstm_recurrent` (the
step-by-step recurrence, the reference the tests compare against). On CUDA, when the optional
``mlstm_kernels`` package (the kernels of the ``xlstm`` package) is importable, :func:`mlstm`
uses its chunkwise Triton kernel instead.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.layers.tokens import from_tokens, to_tokens

_CUDA_KERNEL = "chunkwise--triton_limit_chunk"
_IGATE_BIAS_STD = 0.1  # input-gate bias init (xLSTM reference init)
_MAX_NEG_STAB = 80.0  # exp(80) ~ 5.5e34 < float32 max


def _scaled(q: torch.Tensor) -> torch.Tensor:
    return q / math.sqrt(q.shape[-1])


def _floor(m: torch.Tensor) -> torch.Tensor:
    """``exp(-m)``: the stabilised form of the normaliser's lower bound 1.

    ``m`` is clamped at ``-_MAX_NEG_STAB`` first. Without it, input gates closed far enough
    (``m < -88``) make ``exp(-m)`` overflow float32: the forward still gives ``h = 0``, but the
    backward multiplies a zero gradient by ``inf`` and every weight becomes NaN. Past the clamp the
    bound is above 5e34, so ``h`` is 0 to float precision either way.
    """
    return torch.exp(-m.clamp(min=-_MAX_NEG_STAB))


def _acc(t: torch.Tensor) -> torch.Tensor:
    """Accumulate in at least float32 (half-precision inputs are upcast)."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def mlstm_parallel(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    igate: torch.Tensor,
    fgate: torch.Tensor,
    eps: float = 1e-6,
    normaliser_grad: bool = True,
) -> torch.Tensor:
    """Stabilised parallel (quadratic) form of the mLSTM cell.

    Args:
        q, k: ``(B, NH, S, DK)`` queries and keys (``q . k`` is scaled by ``1/sqrt(DK)``).
        v: ``(B, NH, S, DV)`` values.
        igate: ``(B, NH, S)`` input-gate pre-activations (the gate is ``exp(igate)``).
        fgate: ``(B, NH, S)`` forget-gate pre-activations (the gate is ``sigmoid(fgate)``).
        eps: added to the normaliser.
        normaliser_grad: ``True`` (default): the exact gradient. ``False``: the normaliser
            ``max(|n^T q|, exp(-m)) + eps`` and the stabiliser ``m`` are constants in the backward,
            the gradient ``mlstm_kernels``' custom backward and its Triton kernels compute (the
            forward is the same; the gradients of ``q``, ``k`` and the gates differ, ``v``'s not).

    Returns:
        ``(B, NH, S, DV)`` hidden states ``h_t``.
    """
    s = q.shape[-2]
    log_f = F.logsigmoid(_acc(fgate))
    cum = torch.cumsum(log_f, dim=-1)  # F_t = sum_{l<=t} log f_l
    # log D_tj = F_t - F_j + i_j for j <= t (decay from step j to t times input gate at j)
    log_d = cum.unsqueeze(-1) - cum.unsqueeze(-2) + _acc(igate).unsqueeze(-2)
    causal = torch.ones(s, s, dtype=torch.bool, device=q.device).tril()
    log_d = log_d.masked_fill(~causal, float("-inf"))
    m = log_d.amax(dim=-1, keepdim=True)  # (B, NH, S, 1) stabiliser, finite (diagonal is finite)
    if not normaliser_grad:
        m = m.detach()
    scores = (_scaled(_acc(q)) @ _acc(k).transpose(-1, -2)) * torch.exp(log_d - m)
    norm = torch.maximum(scores.sum(-1, keepdim=True).abs(), _floor(m)) + eps
    if not normaliser_grad:
        norm = norm.detach()
    return ((scores / norm) @ _acc(v)).to(v.dtype)


def mlstm_recurrent(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    igate: torch.Tensor,
    fgate: torch.Tensor,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Stabilised recurrent form of the mLSTM cell (one step per token); same I/O as the parallel form.

    ``m_t = max(log f_t + m_{t-1}, i_t)``, ``C_t = f'_t C_{t-1} + i'_t k_t v_t^T`` and
    ``n_t = f'_t n_{t-1} + i'_t k_t`` with ``i'_t = exp(i_t - m_t)``,
    ``f'_t = exp(log f_t + m_{t-1} - m_t)``; ``h_t = C_t^T q_t / (max(|n_t^T q_t|, exp(-m_t)) + eps)``.
    """
    b, nh, s, dk = q.shape
    v_dtype = v.dtype
    q, k, v, igate = _scaled(_acc(q)), _acc(k), _acc(v), _acc(igate)
    log_f = F.logsigmoid(_acc(fgate))
    c = q.new_zeros(b, nh, dk, v.shape[-1])
    n = q.new_zeros(b, nh, dk)
    m = q.new_full((b, nh), float("-inf"))
    out = []
    for t in range(s):
        m_new = torch.maximum(log_f[..., t] + m, igate[..., t])
        f_t = torch.exp(log_f[..., t] + m - m_new)
        i_t = torch.exp(igate[..., t] - m_new)
        c = f_t[..., None, None] * c + i_t[..., None, None] * (k[..., t, :, None] * v[..., t, None, :])
        n = f_t[..., None] * n + i_t[..., None] * k[..., t, :]
        num = (q[..., t, :, None] * c).sum(-2)  # (B, NH, DV)
        den = torch.maximum((q[..., t, :] * n).sum(-1).abs(), _floor(m_new)) + eps
        out.append(num / den[..., None])
        m = m_new
    return torch.stack(out, dim=-2).to(v_dtype)


def mlstm_chunkwise(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    igate: torch.Tensor,
    fgate: torch.Tensor,
    chunk_size: int = 256,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Chunkwise form: the parallel form inside chunks, the recurrence between them.

    Same I/O and result as :func:`mlstm_parallel`, with memory linear in ``S``
    (``O(S * chunk_size)`` instead of ``O(S^2)``). The stabilised state ``(C, n, m)`` entering a
    chunk contributes ``exp(b_t + m - m_t) q_t^T C`` where ``b_t`` is the log forget-gate sum
    from the chunk start to ``t``.
    """
    b, nh, s, dk = q.shape
    q, k, v = _scaled(_acc(q)), _acc(k), _acc(v)
    log_f, igate = F.logsigmoid(_acc(fgate)), _acc(igate)
    c = q.new_zeros(b, nh, dk, v.shape[-1])
    n = q.new_zeros(b, nh, dk, 1)
    m = q.new_full((b, nh, 1, 1), float("-inf"))
    out = []
    for start in range(0, s, chunk_size):
        sl = slice(start, start + chunk_size)
        qc, kc, vc = q[..., sl, :], k[..., sl, :], v[..., sl, :]
        cum = torch.cumsum(log_f[..., sl], dim=-1)  # b_t
        length = cum.shape[-1]
        log_d = cum.unsqueeze(-1) - cum.unsqueeze(-2) + igate[..., sl].unsqueeze(-2)
        causal = torch.ones(length, length, dtype=torch.bool, device=q.device).tril()
        log_d = log_d.masked_fill(~causal, float("-inf"))
        log_inter = cum.unsqueeze(-1) + m  # (B, NH, L, 1) weight of the carried state
        m_t = torch.maximum(log_d.amax(-1, keepdim=True), log_inter)
        scores = (qc @ kc.transpose(-1, -2)) * torch.exp(log_d - m_t)
        inter = torch.exp(log_inter - m_t)
        num = scores @ vc + inter * (qc @ c)
        den = scores.sum(-1, keepdim=True) + inter * (qc @ n)
        out.append(num / (torch.maximum(den.abs(), _floor(m_t)) + eps))
        # carry the state to the chunk end (row of the last step)
        decay = (cum[..., -1:] - cum + igate[..., sl]).unsqueeze(-1)  # (B, NH, L, 1)
        m_new = m_t[..., -1:, :]
        w = torch.exp(decay - m_new)
        carry = torch.exp(cum[..., -1:, None] + m - m_new)
        c = carry * c + (kc * w).transpose(-1, -2) @ vc
        n = carry * n + (kc * w).sum(-2, keepdim=True).transpose(-1, -2)
        m = m_new
    return torch.cat(out, dim=-2).to(v.dtype)


@functools.cache
def _cuda_kernel() -> Callable[..., torch.Tensor] | None:
    """The chunkwise Triton kernel of ``mlstm_kernels`` (shipped with ``xlstm``), if importable."""
    try:
        from mlstm_kernels.torch import get_mlstm_kernel
    except ImportError:
        return None
    try:
        return get_mlstm_kernel(_CUDA_KERNEL)
    except Exception:  # noqa: BLE001 - a version without this kernel name
        return None


def mlstm(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    igate: torch.Tensor,
    fgate: torch.Tensor,
    backend: str = "auto",
    chunk_size: int = 256,
) -> torch.Tensor:
    """mLSTM cell, shapes as :func:`mlstm_parallel`.

    The kernel's forward is this cell's; its backward is not the exact gradient: like
    ``mlstm_kernels``' custom backward it holds the normaliser and the stabiliser constant
    (:func:`mlstm_parallel` with ``normaliser_grad=False`` computes the same), so the gradients of
    ``q``, ``k`` and the gates differ from the PyTorch form's (by about their own size on random
    inputs; checked by ``segbench bench gpu``). A run with ``"auto"`` on a GPU with the kernel
    installed trains with that gradient; ``"torch"`` keeps the exact one everywhere.

    Args:
        backend: ``"torch"`` (pure PyTorch), ``"kernel"`` (the ``mlstm_kernels`` CUDA kernel,
            error if unavailable) or ``"auto"`` (the kernel for CUDA inputs when it is
            importable, else PyTorch; a kernel failure falls back to PyTorch with a warning).
        chunk_size: PyTorch uses the parallel form up to this many tokens and the chunkwise
            form (memory linear in ``S``) beyond.
    """
    if backend not in ("auto", "torch", "kernel"):
        raise ValueError(f"unknown mLSTM backend {backend!r}")
    kernel = _cuda_kernel() if backend != "torch" and q.is_cuda else None
    if backend == "kernel" and kernel is None:
        raise RuntimeError("mLSTM backend 'kernel' needs CUDA inputs and the mlstm_kernels package")
    if kernel is not None:
        try:
            return kernel(q=q, k=k, v=v, i=igate, f=fgate)
        except Exception as err:  # noqa: BLE001 - e.g. a sequence length the kernel rejects
            if backend == "kernel":
                raise
            warnings.warn(f"mLSTM CUDA kernel failed ({err}); using the PyTorch form", stacklevel=2)
    if q.shape[-2] <= chunk_size:
        return mlstm_parallel(q, k, v, igate, fgate)
    return mlstm_chunkwise(q, k, v, igate, fgate, chunk_size=chunk_size)


class MLSTMLayer(nn.Module):
    """One pre-norm ViL / xLSTM mLSTM block with a residual connection.

    ``x -> LN -> up-projection to (x_m, z) -> causal depthwise conv + SiLU on x_m -> q, k (from
    the conv branch), v (from x_m) -> gates -> mLSTM -> per-head GroupNorm -> + skip * conv ->
    * SiLU(z) -> down-projection``, added to ``x``.

    Args:
        dim: token width ``D``.
        num_heads: mLSTM heads (the inner width must divide by it).
        expansion: inner width ``= expansion * dim``.
        conv_kernel: causal depthwise convolution size.
        forget_bias: ``(low, high)`` range of the initial forget-gate biases (long memory).
        dropout: on the block output.
        backend, chunk_size: see :func:`mlstm`.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        expansion: int = 2,
        conv_kernel: int = 4,
        forget_bias: tuple[float, float] = (3.0, 6.0),
        dropout: float = 0.0,
        backend: str = "auto",
        chunk_size: int = 256,
    ) -> None:
        super().__init__()
        inner = expansion * dim
        if inner % num_heads:
            raise ValueError(f"inner width {inner} is not divisible by num_heads={num_heads}")
        self.num_heads, self.backend, self.chunk_size = num_heads, backend, chunk_size
        self.norm = nn.LayerNorm(dim)
        self.proj_up = nn.Linear(dim, 2 * inner)
        self.conv = nn.Conv1d(inner, inner, conv_kernel, padding=conv_kernel - 1, groups=inner)
        self.q_proj = nn.Linear(inner, inner, bias=False)
        self.k_proj = nn.Linear(inner, inner, bias=False)
        self.v_proj = nn.Linear(inner, inner, bias=False)
        self.igate = nn.Linear(3 * inner, num_heads)
        self.fgate = nn.Linear(3 * inner, num_heads)
        self.out_norm = nn.GroupNorm(num_heads, inner)
        self.skip = nn.Parameter(torch.ones(inner))
        self.proj_down = nn.Linear(inner, dim)
        self.drop = nn.Dropout(dropout)
        for gate in (self.igate, self.fgate):
            nn.init.zeros_(gate.weight)
        nn.init.normal_(self.igate.bias, std=_IGATE_BIAS_STD)
        with torch.no_grad():
            self.fgate.bias.copy_(torch.linspace(*forget_bias, num_heads))

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        b, s, _ = t.shape
        return t.view(b, s, self.num_heads, -1).transpose(1, 2)  # (B, NH, S, DH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, S, D)`` tokens in scan order -> ``(B, S, D)``."""
        b, s, _ = x.shape
        x_m, z = self.proj_up(self.norm(x)).chunk(2, dim=-1)
        x_c = F.silu(self.conv(x_m.transpose(1, 2))[..., :s].transpose(1, 2))  # causal
        q, k, v = self.q_proj(x_c), self.k_proj(x_c), self.v_proj(x_m)
        qkv = torch.cat([q, k, v], dim=-1)
        ig, fg = self.igate(qkv).transpose(1, 2), self.fgate(qkv).transpose(1, 2)  # (B, NH, S)
        h = mlstm(self._heads(q), self._heads(k), self._heads(v), ig, fg, self.backend, self.chunk_size)
        h = h.transpose(1, 2).reshape(b, s, -1)
        h = self.out_norm(h.reshape(b * s, -1)).view(b, s, -1) + self.skip * x_c  # per token, head
        return x + self.drop(self.proj_down(h * F.silu(z)))


class ViLStack(nn.Module):
    """Vision-LSTM blocks over the flattened grid of a feature map, alternating scan direction.

    Block ``j`` reads the tokens in raster order when ``j`` is even and in reversed order when it
    is odd. Cost of the PyTorch form is quadratic in the number of tokens ``prod(spatial)``: put
    it on coarse feature maps (past ``chunk_size`` tokens the chunkwise form bounds memory).

    Args:
        dim: channels ``C`` of the feature map (= token width).
        depth: number of mLSTM blocks.
        kwargs: passed to :class:`MLSTMLayer`.
    """

    def __init__(self, dim: int, depth: int = 2, **kwargs: Any) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MLSTMLayer(dim, **kwargs) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, C, *spatial)`` -> ``(B, C, *spatial)`` (residual inside each block)."""
        tokens = to_tokens(x)  # (B, S, C)
        for j, block in enumerate(self.blocks):
            if j % 2:
                tokens = block(tokens.flip(1)).flip(1)
            else:
                tokens = block(tokens)
        return from_tokens(self.norm(tokens), x.shape[2:])
