"""Fast paths against segbench's pure-PyTorch paths on the same weights and inputs (the
``fast_paths`` stage of ``python -m bench.perf.gpu_check``).

Each check runs a *fast* side and a *reference* side on the same leaves (inputs and, for a
module, the same weights), pulls one fixed random cotangent back through both, and compares the
outputs and every leaf's gradient with :func:`scaled_error` against the tolerance of the dtype
(:data:`TOLERANCES`). On a GPU the fast side is the kernel segbench uses when it is installed:

- ``selective_scan``: ``mamba_ssm``'s ``selective_scan_fn`` against ``models.layers.ssm.selective_scan``
  (``mambapy.pscan``); without the kernel, the pure scan against a step-by-step loop written here;
- ``mamba_mixer``: ``MambaMixer(use_kernel="cuda")`` against ``use_kernel="torch"`` (same state
  dict: the wiring of Δ bias, softplus and the ``z`` gate around the kernel);
- ``mlstm``: ``mlstm(backend="kernel")`` (``mlstm_kernels``) against ``backend="torch"``; without
  the kernel, ``backend="torch"`` against :func:`models.layers.mlstm.mlstm_recurrent`;
- ``sdpa``: ``scaled_dot_product_attention`` restricted to the flash backend (the memory-efficient
  one where flash refuses the dtype) against the math backend;
- ``flash_attn``: the ``flash-attn`` package's ``flash_attn_func`` against the math backend.

Every result names the backend each side actually ran; a check whose kernel is missing is
``skipped`` with the reason, never reported as a kernel run.
"""

from __future__ import annotations

import copy
import importlib.util
import traceback
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

TOLERANCES: dict[torch.dtype, float] = {
    # float32: both sides compute in float32 (TF32 switched off) and differ only in summation order
    # over a few hundred steps (unit round-off 6e-8, growing with the length): 1e-4 leaves margin.
    torch.float32: 1e-4,
    # bfloat16: the fast side computes in bf16 (8-bit mantissa, unit round-off 2e-3) against a float32
    # reference on the same bf16-rounded values; errors of a few round-offs accumulate: 3e-2.
    torch.bfloat16: 3e-2,
}
"""Largest :func:`scaled_error` a fast path may show against its reference, per dtype."""

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}

Leaves = dict[str, torch.Tensor]


def scaled_error(fast: torch.Tensor, ref: torch.Tensor) -> float:
    """``max|fast - ref| / max|ref|`` in float64 (``inf`` for a shape mismatch or a non-finite value).

    Args:
        fast, ref: tensors of one shape, any floating dtype.
    """
    if fast.shape != ref.shape:
        return float("inf")
    f, r = fast.detach().double().cpu(), ref.detach().double().cpu()
    if not (torch.isfinite(f).all() and torch.isfinite(r).all()):
        return float("inf")
    return float((f - r).abs().max() / r.abs().max().clamp_min(1e-30)) if r.numel() else 0.0


def compare(
    fast_out: torch.Tensor,
    ref_out: torch.Tensor,
    fast_grads: Leaves,
    ref_grads: Leaves,
    dtype: torch.dtype,
) -> dict[str, Any]:
    """Output and per-leaf gradient errors against the tolerance of ``dtype``.

    Returns:
        ``{"tolerance", "output_error", "grad_errors": {leaf: error}, "worst_grad", "passed"}``;
        ``passed`` is false when any error exceeds the tolerance or a gradient is missing on
        one side.
    """
    tol = TOLERANCES[dtype]
    grads = {}
    for name in sorted(set(fast_grads) | set(ref_grads)):
        a, b = fast_grads.get(name), ref_grads.get(name)
        grads[name] = float("inf") if a is None or b is None else scaled_error(a, b)
    out_err = scaled_error(fast_out, ref_out)
    worst = max(grads.values(), default=0.0)
    return {
        "tolerance": tol,
        "output_error": out_err,
        "grad_errors": grads,
        "worst_grad": worst,
        "passed": bool(out_err <= tol and worst <= tol),
    }


def _forward_backward(
    fn: Callable[[Leaves], torch.Tensor], leaves: Leaves, cotangent: torch.Tensor | None
) -> tuple[torch.Tensor, Leaves, torch.Tensor]:
    """``fn`` on fresh copies of ``leaves`` that require grad; output, gradients, cotangent."""
    own = {k: v.detach().clone().requires_grad_(v.is_floating_point()) for k, v in leaves.items()}
    out = fn(own)
    if cotangent is None:
        cotangent = torch.randn(out.shape, device=out.device, generator=None)
    (out.float() * cotangent).sum().backward()
    return out.detach(), {k: v.grad for k, v in own.items() if v.grad is not None}, cotangent


def _module_fn(module: nn.Module, dtype: torch.dtype, arg: str = "x") -> Callable[[Leaves], torch.Tensor]:
    """A leaf function that loads the leaves named ``param.*`` into ``module`` and calls it on ``arg``."""

    def fn(leaves: Leaves) -> torch.Tensor:
        params = {k[len("param.") :]: v.to(dtype) for k, v in leaves.items() if k.startswith("param.")}
        return torch.func.functional_call(module, params, (leaves[arg].to(dtype),))

    return fn


def run_pair(
    fast: Callable[[Leaves], torch.Tensor],
    ref: Callable[[Leaves], torch.Tensor],
    leaves: Leaves,
    dtype: torch.dtype,
) -> dict[str, Any]:
    """Forward and backward of both sides on the same leaves; :func:`compare`'s verdict.

    The leaves are float32 tensors rounded through ``dtype`` first, so that the fast side (which
    casts them to ``dtype`` itself) and the float32 reference see exactly the same values.
    """
    leaves = {k: v.to(dtype).float() if v.is_floating_point() else v for k, v in leaves.items()}
    torch.manual_seed(1)
    ref_out, ref_grads, cot = _forward_backward(ref, leaves, None)
    fast_out, fast_grads, _ = _forward_backward(fast, leaves, cot)
    return compare(fast_out, ref_out, fast_grads, ref_grads, dtype)


# --------------------------------------------------------------------------- the selective scan
def scan_loop(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, D: torch.Tensor
) -> torch.Tensor:
    """Step-by-step selective scan: ``h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t``, ``y_t = C_t h_t + D u_t``.

    Args: as :func:`models.layers.ssm.selective_scan` (``u, delta (B, L, ED)``, ``A (ED, N)``,
    ``B, C (B, L, N)``, ``D (ED,)``). Returns ``(B, L, ED)``.
    """
    h = u.new_zeros(u.shape[0], u.shape[2], A.shape[1])
    ys = []
    for t in range(u.shape[1]):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * u[:, t])[..., None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1) + D * u[:, t])
    return torch.stack(ys, dim=1)


def _scan_leaves(shape: dict[str, int], device: str) -> Leaves:
    b, length, ed, n = shape["batch"], shape["length"], shape["width"], shape["state"]
    g = torch.Generator().manual_seed(0)
    return {
        k: v.to(device)
        for k, v in {
            "u": torch.randn(b, length, ed, generator=g),
            "delta": F.softplus(torch.randn(b, length, ed, generator=g) - 2),
            "A": -torch.exp(torch.randn(ed, n, generator=g) * 0.5),
            "B": torch.randn(b, length, n, generator=g),
            "C": torch.randn(b, length, n, generator=g),
            "D": torch.randn(ed, generator=g),
        }.items()
    }


def check_scan(dtype: torch.dtype, device: str, shape: dict[str, int]) -> dict[str, Any]:
    """The selective scan's fast path against the next slower one (see the module docstring)."""
    from models.layers import ssm

    act = ("u", "delta", "B", "C")  # A and D stay float32, as MambaMixer passes them

    def cast(lv: Leaves, dt: torch.dtype) -> list[torch.Tensor]:
        return [lv[k].to(dt) if k in act else lv[k] for k in ("u", "delta", "A", "B", "C", "D")]

    if ssm._cuda_scan is not None and device == "cuda":

        def fast(lv: Leaves) -> torch.Tensor:
            u, delta, A, B, C, D = cast(lv, dtype)
            y = ssm._cuda_scan(
                u.transpose(1, 2).contiguous(),
                delta.transpose(1, 2).contiguous(),
                A,
                B.transpose(1, 2).contiguous(),
                C.transpose(1, 2).contiguous(),
                D,
            )
            return y.transpose(1, 2)

        labels = ("mamba_ssm selective_scan_fn (CUDA kernel)", "segbench selective_scan (mambapy.pscan)")
        ref = lambda lv: ssm.selective_scan(*cast(lv, torch.float32))  # noqa: E731
    else:
        # the pure scan computes in float32 whatever the input (SpatialMambaLayer switches autocast off)
        fast = lambda lv: ssm.selective_scan(*cast(lv, torch.float32))  # noqa: E731
        ref = lambda lv: scan_loop(*cast(lv, torch.float32))  # noqa: E731
        labels = ("segbench selective_scan (mambapy.pscan, float32)", "step-by-step loop (float32)")
    return {
        "fast": labels[0],
        "reference": labels[1],
        **run_pair(fast, ref, _scan_leaves(shape, device), dtype),
    }


def check_mixer(dtype: torch.dtype, device: str, shape: dict[str, int]) -> dict[str, Any]:
    """``MambaMixer`` with the CUDA kernel against the same weights on the pure scan."""
    from models.layers import ssm

    if ssm._cuda_scan is None or device != "cuda":
        return {"skipped": "needs mamba_ssm's kernel on CUDA (not importable or no GPU)"}
    torch.manual_seed(0)
    mixer = ssm.MambaMixer(shape["width"], d_state=shape["state"], use_kernel="torch").to(device)
    kernel = copy.deepcopy(mixer)
    kernel.use_kernel = "cuda"
    leaves = {f"param.{k}": v.detach() for k, v in mixer.named_parameters()}
    leaves["x"] = torch.randn(shape["batch"], shape["length"], shape["width"], device=device)
    return {
        "fast": "MambaMixer(use_kernel='cuda')",
        "reference": "MambaMixer(use_kernel='torch', float32)",
        **run_pair(_module_fn(kernel, dtype), _module_fn(mixer, torch.float32), leaves, dtype),
    }


# --------------------------------------------------------------------------- the mLSTM cell
def check_mlstm(dtype: torch.dtype, device: str, shape: dict[str, int]) -> dict[str, Any]:
    """``mlstm``'s kernel against its PyTorch form, or the PyTorch form against the recurrence."""
    from models.layers import mlstm as m

    b, nh, s, dh = shape["batch"], shape["heads"], shape["length"], shape["head_dim"]
    g = torch.Generator().manual_seed(0)
    leaves = {
        "q": torch.randn(b, nh, s, dh, generator=g),
        "k": torch.randn(b, nh, s, dh, generator=g),
        "v": torch.randn(b, nh, s, dh, generator=g),
        "igate": torch.randn(b, nh, s, generator=g),
        "fgate": torch.randn(b, nh, s, generator=g) + 3.0,
    }
    leaves = {k: v.to(device) for k, v in leaves.items()}

    def call(fn: Callable[..., torch.Tensor], dt: torch.dtype, **kw: Any) -> Callable[[Leaves], torch.Tensor]:
        return lambda lv: fn(*(lv[k].to(dt) for k in ("q", "k", "v", "igate", "fgate")), **kw)

    exact = None  # the exact-gradient form, reported beside the kernel's check
    if device == "cuda" and m._cuda_kernel() is not None:
        # the kernel's backward holds the normaliser and the stabiliser constant (as mlstm_kernels'
        # custom backward): its reference is the parallel form with that gradient; how far it is
        # from the exact gradient is reported beside (`exact_gradient`), not checked
        fast = call(m.mlstm, dtype, backend="kernel")
        ref = call(m.mlstm_parallel, torch.float32, normaliser_grad=False)
        exact = call(m.mlstm_parallel, torch.float32)
        labels = (
            f"mlstm_kernels {m._CUDA_KERNEL}",
            "segbench mlstm_parallel, normaliser_grad=False (float32)",
        )
    else:
        form = "parallel" if s <= shape["chunk"] else "chunkwise"
        fast = call(m.mlstm, dtype, backend="torch", chunk_size=shape["chunk"])
        ref = call(m.mlstm_recurrent, torch.float32)
        labels = (f"segbench mlstm backend='torch' ({form})", "segbench mlstm_recurrent (float32)")
    result = {"fast": labels[0], "reference": labels[1], **run_pair(fast, ref, leaves, dtype)}
    if exact is not None:
        against = run_pair(fast, exact, leaves, dtype)
        result["exact_gradient"] = {
            "reference": "segbench mlstm_parallel, exact gradient (float32)",
            "output_error": against["output_error"],
            "grad_errors": against["grad_errors"],
        }
    return result


# --------------------------------------------------------------------------- attention
def _attention_leaves(shape: dict[str, int], device: str) -> Leaves:
    g = torch.Generator().manual_seed(0)
    size = (shape["batch"], shape["heads"], shape["length"], shape["head_dim"])
    return {k: torch.randn(size, generator=g).to(device) for k in ("q", "k", "v")}


def _sdpa(backend: SDPBackend, dtype: torch.dtype) -> Callable[[Leaves], torch.Tensor]:
    def fn(lv: Leaves) -> torch.Tensor:
        with sdpa_kernel([backend]):
            return F.scaled_dot_product_attention(lv["q"].to(dtype), lv["k"].to(dtype), lv["v"].to(dtype))

    return fn


def check_sdpa(dtype: torch.dtype, device: str, shape: dict[str, int]) -> dict[str, Any]:
    """SDPA on the flash backend (else the memory-efficient one) against the math backend."""
    leaves = _attention_leaves(shape, device)
    ref = _sdpa(SDPBackend.MATH, torch.float32)
    refused = []
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION):
        try:
            verdict = run_pair(_sdpa(backend, dtype), ref, leaves, dtype)
        except RuntimeError as err:  # "No available kernel": this backend refuses dtype or device
            refused.append(f"{backend.name}: {str(err).splitlines()[0][:120]}")
            continue
        out = {"fast": f"SDPA {backend.name} ({device})", "reference": "SDPA MATH (float32)", **verdict}
        return {**out, "refused": refused} if refused else out
    return {"skipped": "; ".join(refused)}


def check_flash_attn(dtype: torch.dtype, device: str, shape: dict[str, int]) -> dict[str, Any]:
    """The ``flash-attn`` package's ``flash_attn_func`` against SDPA's math backend."""
    if device != "cuda" or importlib.util.find_spec("flash_attn") is None:
        return {"skipped": "needs the flash-attn package on CUDA (not importable or no GPU)"}
    if dtype == torch.float32:
        return {"skipped": "flash_attn_func takes float16 / bfloat16 only"}
    from flash_attn import flash_attn_func

    def fast(lv: Leaves) -> torch.Tensor:  # flash-attn's layout is (B, S, H, D)
        q, k, v = (lv[n].to(dtype).transpose(1, 2) for n in ("q", "k", "v"))
        return flash_attn_func(q, k, v).transpose(1, 2)

    verdict = run_pair(fast, _sdpa(SDPBackend.MATH, torch.float32), _attention_leaves(shape, device), dtype)
    return {"fast": "flash_attn.flash_attn_func", "reference": "SDPA MATH (float32)", **verdict}


CHECKS: dict[str, Callable[[torch.dtype, str, dict[str, int]], dict[str, Any]]] = {
    "selective_scan": check_scan,
    "mamba_mixer": check_mixer,
    "mlstm": check_mlstm,
    "sdpa": check_sdpa,
    "flash_attn": check_flash_attn,
}
"""The ``fast_paths`` stage's checks by name: ``check(dtype, device, shape) -> result``."""


def run_checks(
    shapes: dict[str, dict[str, int]], device: str, dtypes: tuple[str, ...] = ("float32", "bfloat16")
) -> dict[str, Any]:
    """Every check of :data:`CHECKS` in every dtype; one failing check is recorded, the rest run.

    Args:
        shapes: per check name, its sizes (``batch``, ``length``, ``width``, ``state``, ``heads``,
            ``head_dim``, ``chunk`` as the check uses them).
        device: ``"cuda"`` or ``"cpu"``.

    Returns:
        ``{"checks": {name: {dtype: result}}, "failed": [name/dtype ...]}``; a result has
        ``passed``, ``skipped`` (the reason) or ``error`` (one line and ``traceback``).
    """
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # float32 means float32
    out: dict[str, Any] = {}
    failed = []
    try:
        for name, check in CHECKS.items():
            out[name] = {}
            for dt in dtypes:
                try:
                    res = check(DTYPES[dt], device, shapes[name])
                except Exception as err:  # noqa: BLE001 - recorded; the other checks still run
                    res = {"error": f"{type(err).__name__}: {err}".splitlines()[0][:300]}
                    res["traceback"] = traceback.format_exc()[-2000:]
                if "skipped" not in res and not res.get("passed"):
                    failed.append(f"{name}/{dt}")
                out[name][dt] = res
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    return {"checks": out, "failed": failed}
