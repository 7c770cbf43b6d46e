"""U-Mamba and its pure-PyTorch Mamba layer (``models.layers.ssm``), on CPU."""

from __future__ import annotations

import pytest
import torch
from mambapy.mamba import MambaBlock, MambaConfig

from models import create_model
from models.layers.ssm import MambaMixer, SpatialMambaLayer, _cuda_scan, selective_scan


def _naive_scan(u, delta, A, B, C, D):
    """Sequential reference: h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t; y_t = C_t h_t + D u_t."""
    h = torch.zeros(u.shape[0], u.shape[2], A.shape[1], dtype=u.dtype)
    ys = []
    for t in range(u.shape[1]):
        dt = delta[:, t, :, None]  # (B, ED, 1)
        h = torch.exp(dt * A) * h + dt * B[:, t, None, :] * u[:, t, :, None]
        ys.append((h * C[:, t, None, :]).sum(-1) + D * u[:, t])
    return torch.stack(ys, dim=1)


def _random_inputs(length: int, batch: int = 2, ed: int = 6, n: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, length, ed, generator=g, dtype=torch.float64)
    delta = torch.nn.functional.softplus(torch.randn(batch, length, ed, generator=g, dtype=torch.float64))
    A = -torch.rand(ed, n, generator=g, dtype=torch.float64) * 2 - 0.1
    B = torch.randn(batch, length, n, generator=g, dtype=torch.float64)
    C = torch.randn(batch, length, n, generator=g, dtype=torch.float64)
    D = torch.randn(ed, generator=g, dtype=torch.float64)
    return u, delta, A, B, C, D


@pytest.mark.parametrize("length", [1, 2, 7, 16, 33])
@pytest.mark.parametrize("chunk", [None, 4])
def test_selective_scan_matches_sequential_reference(length: int, chunk: int | None) -> None:
    args = _random_inputs(length)
    expected = _naive_scan(*args)
    torch.testing.assert_close(selective_scan(*args, chunk_size=chunk), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("chunk", [None, 5])
def test_selective_scan_gradients_match_reference(chunk: int | None) -> None:
    inputs = [t.requires_grad_(True) for t in _random_inputs(12, seed=1)]
    weight = torch.randn(2, 12, 6, dtype=torch.float64)
    (selective_scan(*inputs, chunk_size=chunk) * weight).sum().backward()
    got = [t.grad.clone() for t in inputs]
    for t in inputs:
        t.grad = None
    (_naive_scan(*inputs) * weight).sum().backward()
    for g, t in zip(got, inputs):
        torch.testing.assert_close(g, t.grad, rtol=1e-8, atol=1e-8)


def test_mixer_has_mamba_ssm_weight_layout() -> None:
    d_model, d_state, d_conv, expand = 20, 8, 4, 2
    ed, rank = expand * d_model, 2  # dt_rank "auto" = ceil(20 / 16)
    m = MambaMixer(d_model, d_state=d_state, d_conv=d_conv, expand=expand)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes == {
        "in_proj.weight": (2 * ed, d_model),
        "conv1d.weight": (ed, 1, d_conv),
        "conv1d.bias": (ed,),
        "x_proj.weight": (rank + 2 * d_state, ed),
        "dt_proj.weight": (ed, rank),
        "dt_proj.bias": (ed,),
        "A_log": (ed, d_state),
        "D": (ed,),
        "out_proj.weight": (d_model, ed),
    }


@pytest.mark.parametrize("chunk", [None, 8])
def test_mixer_matches_independent_mambapy_block(chunk: int | None) -> None:
    """mambapy's MambaBlock (same layout) loads our weights strictly and gives the same output."""
    torch.manual_seed(0)
    ours = MambaMixer(16, d_state=8, scan_chunk=chunk, use_kernel="torch")
    ref = MambaBlock(MambaConfig(d_model=16, n_layers=1, d_state=8))
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 37, 16)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-6)


def test_mixer_is_causal_over_tokens() -> None:
    torch.manual_seed(0)
    m = MambaMixer(8, d_state=4)
    x = torch.randn(1, 10, 8)
    x2 = x.clone()
    x2[:, 6:] += torch.randn(1, 4, 8)
    torch.testing.assert_close(m(x)[:, :6], m(x2)[:, :6])


@pytest.mark.skipif(_cuda_scan is not None, reason="mamba_ssm is installed")
def test_cuda_kernel_request_without_mamba_ssm_fails() -> None:
    m = MambaMixer(8, use_kernel="cuda")
    with pytest.raises(RuntimeError, match="mamba_ssm"):
        m(torch.randn(1, 4, 8))


@pytest.mark.parametrize("shape", [(2, 8, 6, 4), (1, 8, 4, 2, 6)])
def test_spatial_layer_keeps_shape(shape: tuple[int, ...]) -> None:
    layer = SpatialMambaLayer(shape[1], d_state=4)
    x = torch.randn(*shape)
    assert layer(x).shape == x.shape


@pytest.mark.parametrize(
    ("name", "expected"), [("umamba_bot", ["enc2"]), ("umamba_enc", ["enc0", "enc1", "enc2"])]
)
def test_mamba_stage_placement(name: str, expected: list[str]) -> None:
    net = create_model(name, spatial_dims=2, in_channels=1, out_channels=3, features=(4, 8, 16))
    assert sorted(net.mixers.keys()) == expected
    assert net(torch.randn(1, 1, 16, 16)).shape == (1, 3, 16, 16)


def test_invalid_kernel_choice() -> None:
    with pytest.raises(ValueError, match="use_kernel"):
        MambaMixer(8, use_kernel="triton")
