"""Step time and peak memory of one training step per family against reference networks (the
``step_time`` stage of ``python -m bench.perf.gpu_check``).

A step is forward, cross-entropy against random labels, backward and an AdamW step, in float32
(``32-true``) and with bfloat16 autocast (``bf16-mixed``). After ``warmup`` steps, ``repeats``
steps are timed one by one (``torch.cuda.synchronize`` around each; the median is reported) and
the peak is ``torch.cuda.max_memory_allocated`` over the timed steps (weights, gradients and
AdamW state included; on CPU: ``n/a``).

segbench's models on nnU-Net's backbone (``nnunet_resenc``, ``nnunet_plain`` and the ResEnc
hybrids ``umamba_bot_resenc``, ``xlstm_bot_resenc``) are built from the plan of the step's own
input patch (option ``patch_size``), which is the plan the references below are built from; the
others with ``preset="paper"``, or at their default size when they have no such preset (the row
says which). The references are the networks of the reference code, built directly in the same
process where their package imports:

- ``dna_resenc``: ``dynamic_network_architectures``' ``ResidualEncoderUNet`` as nnU-Net's ResEnc M
  plans it (Isensee et al. 2024, https://arxiv.org/abs/2404.09556): widths 32·2^i capped at 320
  (512 in 2D), stages down to 4 voxels (at most 6), 1-3-4-6-6-6 residual blocks;
- ``dna_plain``: its ``PlainConvUNet`` as nnU-Net's default plan (two convolutions per stage),
  also the reference of ``umamba_bot`` (U-Mamba Bot is that U-Net with a Mamba layer at the
  bottleneck, Ma et al. 2024, https://arxiv.org/abs/2401.04722);
- ``mamba_block``: U-Mamba's block, ``x + mamba_ssm.Mamba(LayerNorm(x))`` on the tokens of a
  feature map, against segbench's ``SpatialMambaLayer`` (which takes the kernel when installed).

Ratios are segbench / reference (time and peak memory), given only where the two sides are the
same size: parameter counts within :data:`SAME_SIZE` of each other (the same backbone; a hybrid's
one extra layer adds a few per cent). Otherwise the row keeps both times and both parameter counts
and says why it has no ratio (``ratio_withheld``): a 1.4 M network against a 63 M one measures
the size, not the implementation. ``nnunet_resenc`` against ``dna_resenc`` is segbench's wrapper
(padding, cropping, deep supervision's side heads) around the same network; a hybrid against
``dna_resenc`` is the cost of its sequence layer, the comparison the U-Mamba and xLSTM-UNet papers
make.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

FAMILY_MODELS: dict[str, list[tuple[str, str | None]]] = {
    "cnn": [("nnunet_resenc", "dna_resenc"), ("nnunet_plain", "dna_plain"), ("resenc_unet", None)],
    "transformer": [("swin_unetr", None)],
    "mamba": [("umamba_bot_resenc", "dna_resenc"), ("umamba_bot", None)],
    "xlstm": [("xlstm_bot_resenc", "dna_resenc"), ("xlstm_unet", None)],
    "gnn": [("hybridgnet_dense", None)],
    "hybrid": [("paratranscnn", None)],
}
"""Per family: (segbench model, reference network or ``None``). The models of segbench's CPU
tables (``resenc_unet``, ``umamba_bot``, ``xlstm_unet``: MONAI-style nets of about 1-2 M) have no
reference of their size; their rows give the step time alone."""

SAME_SIZE = 0.10
"""Largest relative difference of the parameter counts at which a row gets its time and memory
ratios (``|p - p_ref| / p_ref``)."""

PRECISIONS = ("32-true", "bf16-mixed")
_MIB = 2**20


def _logits(out: Any) -> torch.Tensor:
    """The logits of a network's output: a tensor, a dict's ``logits``, or a list's first entry."""
    if isinstance(out, dict):
        return out["logits"]
    return out[0] if isinstance(out, list | tuple) else out


def time_step(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str, warmup: int, repeats: int
) -> dict[str, Any]:
    """Median seconds of one training step and the peak memory over the timed steps.

    Args:
        net: maps ``x`` to logits ``(B, K, *spatial)`` (or a dict / list holding them).
        x: ``(B, 1, *spatial)`` input on the device to measure.
        y: ``(B, *spatial)`` int64 labels in ``[0, K)``.
        precision: ``"32-true"`` or ``"bf16-mixed"`` (bfloat16 autocast on forward and loss).
    """
    cuda = x.is_cuda
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    net.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            loss = F.cross_entropy(_logits(net(x)).float(), y)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / _MIB if cuda else "n/a"
    return {"s_per_step": statistics.median(times), "peak_mib": peak, "times": times}


def _nnunet_plan(dims: int, size: int) -> tuple[int, list[int], type[nn.Module], type[nn.Module]]:
    n = min(6, 1 + int(math.log2(max(size // 4, 1))))
    cap = 320 if dims == 3 else 512
    conv, norm = (nn.Conv3d, nn.InstanceNorm3d) if dims == 3 else (nn.Conv2d, nn.InstanceNorm2d)
    return n, [min(32 * 2**i, cap) for i in range(n)], conv, norm


def build_reference(name: str, dims: int, size: int, channels: int) -> nn.Module:
    """A reference network of the module docstring (``ImportError`` when its package is missing).

    ``channels`` is the width of ``mamba_block``; the U-Nets map 1 channel to 2 classes.
    """
    if name == "mamba_block":
        from mamba_ssm import Mamba

        return _MambaBlock(Mamba(d_model=channels, d_state=16, d_conv=4, expand=2), channels)
    from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet

    n, features, conv, norm = _nnunet_plan(dims, size)
    common = {
        "input_channels": 1,
        "n_stages": n,
        "features_per_stage": features,
        "conv_op": conv,
        "kernel_sizes": 3,
        "strides": [1] + [2] * (n - 1),
        "num_classes": 2,
        "conv_bias": True,
        "norm_op": norm,
        "norm_op_kwargs": {"eps": 1e-5, "affine": True},
        "nonlin": nn.LeakyReLU,
        "nonlin_kwargs": {"inplace": True},
        "deep_supervision": False,
    }
    if name == "dna_resenc":
        blocks = [1, 3, 4, 6, 6, 6][:n]
        return ResidualEncoderUNet(
            **common, n_blocks_per_stage=blocks, n_conv_per_stage_decoder=[1] * (n - 1)
        )
    if name == "dna_plain":
        return PlainConvUNet(**common, n_conv_per_stage=[2] * n, n_conv_per_stage_decoder=[2] * (n - 1))
    raise KeyError(f"unknown reference {name!r}")


class _MambaBlock(nn.Module):
    """U-Mamba's block: ``(B, C, *spatial)`` -> tokens -> ``x + Mamba(LN(x))`` -> ``(B, C, *spatial)``."""

    def __init__(self, mamba: nn.Module, channels: int) -> None:
        super().__init__()
        self.norm, self.mamba = nn.LayerNorm(channels), mamba

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(2).transpose(1, 2)  # (B, L, C)
        out = tokens + self.mamba(self.norm(tokens))
        return out.transpose(1, 2).reshape(x.shape)


def build_segbench(name: str, dims: int, size: int) -> tuple[nn.Module, str]:
    """segbench's ``name`` and how it was sized: a model planned by nnU-Net's rules at the plan of
    the ``size``-edged input patch (the references' plan) and ``"plan of the input patch"``; else
    at its ``paper`` preset and ``"paper"``; else, for a model without that preset, at its default
    size and ``"default: <why>"``."""
    from models import create_model, model_entry

    meta = model_entry(name).meta
    kw: dict[str, Any] = {}
    if meta.get("fixed_input_size"):
        kw["img_size"] = (size,) * dims
    base = {"spatial_dims": dims, "in_channels": 1, "out_channels": 2, **kw}
    if "patch_size" in meta.get("options", ()):
        return create_model(name, patch_size=(size,) * dims, **base), "plan of the input patch"
    try:
        return create_model(name, preset="paper", **base), "paper"
    except ValueError as err:  # UnknownPresetError (a UserError, so a ValueError), or no preset option
        if "preset" not in str(err):
            raise
        return create_model(name, **base), f"default: {str(err)[:160]}"


def _fast_path(family: str, device: str) -> str:
    """The path the family's sequence core takes here (never claims a kernel that is not used)."""
    if device != "cuda" or family not in ("mamba", "xlstm"):
        return "PyTorch"
    if family == "mamba":
        from models.layers import ssm

        return "mamba_ssm kernel" if ssm._cuda_scan is not None else "mambapy.pscan"
    from models.layers import mlstm

    return "mlstm_kernels" if mlstm._cuda_kernel() is not None else "PyTorch mLSTM"


def _measure(build: Callable[[], nn.Module], x: torch.Tensor, y: torch.Tensor, **kw: Any) -> dict[str, Any]:
    net = None
    try:
        net = build().to(x.device)
        return {"params": sum(p.numel() for p in net.parameters()), **time_step(net, x, y, **kw)}
    except Exception as err:  # noqa: BLE001 - recorded in the row; the next model runs
        return {"error": f"{type(err).__name__}: {err}".splitlines()[0][:300]}
    finally:
        del net
        if x.is_cuda:
            torch.cuda.empty_cache()


def _ratio(a: Any, b: Any) -> float | None:
    return a / b if isinstance(a, float) and isinstance(b, float) and b > 0 else None


def size_mismatch(params: Any, ref_params: Any) -> str | None:
    """Why two networks' step times do not compare (``None`` when they do): parameter counts more
    than :data:`SAME_SIZE` apart, or a count missing."""
    if not isinstance(params, int) or not isinstance(ref_params, int) or ref_params <= 0:
        return "a parameter count is missing"
    if abs(params - ref_params) / ref_params > SAME_SIZE:
        return f"sizes differ: {params / 1e6:.2f} M vs {ref_params / 1e6:.2f} M"
    return None


def _ratios(row: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    """``time_ratio`` / ``memory_ratio`` of a measured row over its reference's measurement; both
    ``None`` with ``ratio_withheld`` when :func:`size_mismatch` says the sizes do not compare (a
    reference that failed to measure has no ratio and needs no reason beside its ``error``)."""
    withheld = size_mismatch(row.get("params"), ref.get("params")) if "error" not in ref else None
    if withheld:
        return {"time_ratio": None, "memory_ratio": None, "ratio_withheld": withheld}
    return {
        "time_ratio": _ratio(row.get("s_per_step"), ref.get("s_per_step")),
        "memory_ratio": _ratio(row.get("peak_mib"), ref.get("peak_mib")),
    }


def step_table(
    device: str,
    families: list[str] | None,
    dims: int,
    size: int,
    batch: int,
    repeats: int,
    time_left: Callable[[], float],
) -> dict[str, Any]:
    """Rows of (family, model, precision): segbench's figures, the reference's, their ratios."""
    warmup = 3 if device == "cuda" else 1
    families = families or list(FAMILY_MODELS)
    unknown = set(families) - set(FAMILY_MODELS)
    if unknown:
        raise ValueError(f"unknown families {sorted(unknown)}; known: {', '.join(FAMILY_MODELS)}")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, *(size,) * dims, generator=g).to(device)
    y = torch.randint(0, 2, (batch, *(size,) * dims), generator=g).to(device)
    refs: dict[tuple[str, str], dict[str, Any]] = {}
    rows = []
    for family in families:
        for name, ref in FAMILY_MODELS[family]:
            for precision in PRECISIONS:
                if time_left() <= 0:
                    rows.append(
                        {"family": family, "model": name, "precision": precision, "error": "budget spent"}
                    )
                    continue
                preset: list[str] = []

                def seg(name: str = name, preset: list[str] = preset) -> nn.Module:
                    net, how = build_segbench(name, dims, size)
                    preset.append(how)
                    return net

                row = {
                    "family": family,
                    "model": name,
                    "precision": precision,
                    "fast_path": _fast_path(family, device),
                }
                row |= _measure(seg, x, y, precision=precision, warmup=warmup, repeats=repeats)
                row["preset"] = preset[0] if preset else None  # "paper" or "default: <why>"
                if ref is not None:
                    if (ref, precision) not in refs:
                        build = lambda ref=ref: build_reference(ref, dims, size, 0)  # noqa: E731
                        refs[ref, precision] = _measure(
                            build, x, y, precision=precision, warmup=warmup, repeats=repeats
                        )
                    r = refs[ref, precision]
                    row |= {"reference": ref, **{f"ref_{k}": v for k, v in r.items() if k != "times"}}
                    row |= _ratios(row, r)
                rows.append(row)
                said = row.get("error") or f"{row['s_per_step']:.3f} s"
                print(f"   {name} {precision}: {said}", flush=True)
    if "mamba" in families and time_left() > 0:
        rows += _mamba_block_rows(device, dims, size, batch, warmup, repeats)
    settings = {
        "device": device,
        "dims": dims,
        "size": size,
        "batch": batch,
        "warmup": warmup,
        "repeats": repeats,
    }
    return {"settings": settings, "rows": rows}


def _mamba_block_rows(device: str, dims: int, size: int, batch: int, warmup: int, repeats: int) -> list[dict]:
    """segbench's ``SpatialMambaLayer`` against U-Mamba's block on the same feature map."""
    from models.layers.ssm import SpatialMambaLayer

    channels, grid = (64, max(size // 4, 2)) if device == "cuda" else (8, max(size // 4, 2))
    x = torch.randn(batch, channels, *(grid,) * dims, device=device)
    y = torch.randint(0, channels, (batch, *(grid,) * dims), device=device)  # the block's C "classes"
    rows = []
    for precision in PRECISIONS:
        kw = {"precision": precision, "warmup": warmup, "repeats": repeats}
        row = {"family": "mamba", "model": f"SpatialMambaLayer C={channels} grid={grid}^{dims}"}
        row |= {"precision": precision, "fast_path": _fast_path("mamba", device), "preset": "block"}
        row |= _measure(lambda: SpatialMambaLayer(channels), x, y, **kw)
        row["reference"] = "mamba_block"
        r = _measure(lambda: build_reference("mamba_block", dims, size, channels), x, y, **kw)
        row |= {f"ref_{k}": v for k, v in r.items() if k != "times"}
        row |= _ratios(row, r)
        rows.append(row)
    return rows


def format_steps(result: dict[str, Any]) -> str:
    """Markdown table of :func:`step_table`'s rows."""
    s = result["settings"]
    shape = "×".join([str(s["size"])] * s["dims"])
    head = f"| model ({s['device']}, batch {s['batch']}, {shape}) | preset | precision | path | s / step |"
    out = [
        head + " peak MiB | reference | ref s / step | time ratio | memory ratio |",
        "|---|---|---|---|---:|---:|---|---:|---:|---:|",
    ]
    for r in result["rows"]:
        if "error" in r:
            out.append(f"| {r['model']} | | {r['precision']} | | | | | | | {r['error'].replace('|', '/')} |")
            continue

        def num(v: Any, fmt: str) -> str:
            return format(v, fmt) if isinstance(v, float) else ("" if v is None else str(v))

        ref = r.get("reference") or ""
        ref_t = r.get("ref_error") or num(r.get("ref_s_per_step"), ".3f")
        preset = (r.get("preset") or "").split(":")[0]
        ratios = f"{num(r.get('time_ratio'), '.2f')} | {num(r.get('memory_ratio'), '.2f')}"
        # a JSON written before the size rule may hold ratios of unequal networks: never shown
        why = r.get("ratio_withheld") or (
            size_mismatch(r.get("params"), r.get("ref_params")) if ref else None
        )
        if ref and not r.get("ref_error") and why:
            ratios = f"– ({why}) | –"
        out.append(
            f"| {r['model']} | {preset} | {r['precision']} | {r.get('fast_path')} | "
            f"{r['s_per_step']:.3f} | {num(r['peak_mib'], '.0f')} | {ref} | {str(ref_t).replace('|', '/')} | "
            f"{ratios} |"
        )
    return "\n".join(out)
