"""Tests of the mLSTM cell, the ViL blocks and the xLSTM-UNet family."""

from __future__ import annotations

import pytest
import torch

from models import create_model
from models.layers.mlstm import (
    MLSTMLayer,
    ViLStack,
    mlstm,
    mlstm_chunkwise,
    mlstm_parallel,
    mlstm_recurrent,
)


def _cell_inputs(seed: int, gate_scale: float, dtype: torch.dtype = torch.float32):
    g = torch.Generator().manual_seed(seed)
    b, nh, s, dk, dv = 2, 3, 13, 4, 5
    q, k = (torch.randn(b, nh, s, dk, generator=g, dtype=dtype) for _ in range(2))
    v = torch.randn(b, nh, s, dv, generator=g, dtype=dtype)
    igate = gate_scale * torch.randn(b, nh, s, generator=g, dtype=dtype)
    fgate = gate_scale * torch.randn(b, nh, s, generator=g, dtype=dtype)
    return q, k, v, igate, fgate


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("gate_scale", [1.0, 8.0])
def test_parallel_form_equals_recurrence(seed: int, gate_scale: float) -> None:
    """The quadratic (attention-like) form reproduces the stabilised step-by-step recurrence,
    also with large gate pre-activations where the max-stabiliser matters."""
    args = _cell_inputs(seed, gate_scale)
    par, rec = mlstm_parallel(*args), mlstm_recurrent(*args)
    assert par.shape == rec.shape == (2, 3, 13, 5)
    torch.testing.assert_close(par, rec, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("chunk_size", [1, 4, 5, 64])
def test_chunkwise_form_equals_recurrence(chunk_size: int) -> None:
    """Chunks of any size (also not dividing S = 13) give the same outputs and gradients."""
    args = [t.requires_grad_() for t in _cell_inputs(2, 8.0, torch.float64)]
    chunked = mlstm_chunkwise(*args, chunk_size=chunk_size)
    torch.testing.assert_close(chunked, mlstm_recurrent(*args))
    weights = torch.randn_like(chunked)
    grads_chunk = torch.autograd.grad((chunked * weights).sum(), args)
    grads_par = torch.autograd.grad((mlstm_parallel(*args) * weights).sum(), args)
    for g_c, g_p in zip(grads_chunk, grads_par):
        torch.testing.assert_close(g_c, g_p)


@pytest.mark.parametrize("form", ["parallel", "chunkwise", "recurrent"])
def test_closed_input_gates_keep_gradients_finite(form: str) -> None:
    """Input-gate pre-activations of -100 (gates closed, stabiliser m < -88): float32 must give the
    float64 outputs and gradients (h ~ 0), not NaN. The unguarded exp(-m) overflowed to inf and its
    backward (0 * inf) turned every weight of the xLSTM U-Net NaN on CHASE_DB1 near step 100."""
    fn = {
        "parallel": mlstm_parallel,
        "chunkwise": lambda *a: mlstm_chunkwise(*a, chunk_size=5),
        "recurrent": mlstm_recurrent,
    }[form]
    q, k, v, ig, fg = _cell_inputs(4, 1.0, torch.float64)
    ig = ig - 100.0
    fg = fg + 3.0
    weights = torch.randn(2, 3, 13, 5, dtype=torch.float64)
    results = {}
    for dtype in (torch.float32, torch.float64):
        args = [t.to(dtype).requires_grad_() for t in (q, k, v, ig, fg)]
        out = fn(*args)
        grads = torch.autograd.grad((out * weights.to(dtype)).sum(), args)
        results[dtype] = (out, grads)
    out32, grads32 = results[torch.float32]
    out64, grads64 = results[torch.float64]
    assert torch.isfinite(out32).all() and all(torch.isfinite(g).all() for g in grads32)
    torch.testing.assert_close(out32.double(), out64, atol=1e-6, rtol=1e-4)
    for g32, g64 in zip(grads32, grads64, strict=True):
        torch.testing.assert_close(g32.double(), g64, atol=1e-5, rtol=1e-3)


def test_recurrence_matches_unstabilised_definition() -> None:
    """With moderate gates the cell equals the plain definition C_t = f C + i v k^T,
    n_t = f n + i k, h_t = C_t q_t / max(|n_t^T q_t|, 1) (Beck et al. 2024, eq. 19-27)."""
    q, k, v, ig, fg = _cell_inputs(3, 1.0, torch.float64)
    q_s = q / q.shape[-1] ** 0.5
    c = torch.zeros(2, 3, 4, 5, dtype=torch.float64)
    n = torch.zeros(2, 3, 4, dtype=torch.float64)
    hs = []
    for t in range(q.shape[-2]):
        f_t, i_t = torch.sigmoid(fg[..., t]), torch.exp(ig[..., t])
        c = f_t[..., None, None] * c + i_t[..., None, None] * k[..., t, :, None] * v[..., t, None, :]
        n = f_t[..., None] * n + i_t[..., None] * k[..., t, :]
        num = (q_s[..., t, :, None] * c).sum(-2)
        den = (q_s[..., t, :] * n).sum(-1).abs().clamp_min(1.0)
        hs.append(num / den[..., None])
    ref = torch.stack(hs, dim=-2)
    torch.testing.assert_close(mlstm_recurrent(q, k, v, ig, fg, eps=0.0), ref)
    torch.testing.assert_close(mlstm_parallel(q, k, v, ig, fg, eps=0.0), ref)


@pytest.mark.parametrize(
    ("normaliser_grad", "reference"),
    [(True, "parallel--native_autograd"), (False, "parallel--native_custbw")],
)
def test_parallel_form_and_its_gradients_equal_mlstm_kernels(normaliser_grad: bool, reference: str) -> None:
    """Against ``mlstm_kernels``' own PyTorch implementations (the reference code of the xLSTM
    kernels, on CPU): the exact gradient is its autograd form's; with ``normaliser_grad=False`` it is
    its custom backward's, the gradient its Triton kernels compute (the normaliser and the
    stabiliser held constant). The two gradients of ``q`` differ by about their own size."""
    import mlstm_kernels.torch as kernels  # a test dependency (pyproject: test)

    g = torch.Generator().manual_seed(0)
    b, nh, s, d = 2, 3, 40, 8
    leaves = [torch.randn(b, nh, s, d, generator=g, dtype=torch.float64) for _ in range(3)]
    leaves += [
        torch.randn(b, nh, s, generator=g, dtype=torch.float64),
        3 + torch.randn(b, nh, s, generator=g, dtype=torch.float64),
    ]
    cot = torch.randn(b, nh, s, d, generator=g, dtype=torch.float64)

    def grads(fn):
        xs = [x.clone().requires_grad_(True) for x in leaves]
        out = fn(*xs)
        (out * cot).sum().backward()
        return out.detach(), [x.grad for x in xs]

    ref_fn = kernels.get_mlstm_kernel(reference)
    ours, theirs = (
        grads(lambda *x: mlstm_parallel(*x, normaliser_grad=normaliser_grad)),
        grads(lambda q, k, v, i, f: ref_fn(q=q, k=k, v=v, i=i, f=f)),
    )
    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-10, atol=1e-10)
    for a, b_ in zip(ours[1], theirs[1]):
        torch.testing.assert_close(a, b_, rtol=1e-8, atol=1e-8)
    exact = grads(mlstm_parallel)[1][0]
    held = grads(lambda *x: mlstm_parallel(*x, normaliser_grad=False))[1][0]
    assert (exact - held).abs().max() > 0.1 * exact.abs().max()


def test_parallel_form_is_causal() -> None:
    """Changing a later token leaves the earlier outputs unchanged."""
    q, k, v, ig, fg = _cell_inputs(4, 2.0)
    out = mlstm_parallel(q, k, v, ig, fg)
    v2 = v.clone()
    v2[..., 7:, :] += 1.0
    out2 = mlstm_parallel(q, k, v2, ig, fg)
    torch.testing.assert_close(out[..., :7, :], out2[..., :7, :])


def test_backend_selection_on_cpu() -> None:
    args = _cell_inputs(5, 1.0)
    torch.testing.assert_close(mlstm(*args, backend="auto"), mlstm_parallel(*args))
    torch.testing.assert_close(mlstm(*args, chunk_size=4), mlstm_parallel(*args), atol=1e-5, rtol=1e-4)
    with pytest.raises(RuntimeError):
        mlstm(*args, backend="kernel")
    with pytest.raises(ValueError):
        mlstm(*args, backend="cuda")


def test_vil_stack_alternates_direction() -> None:
    """A one-block stack is causal in raster order; the second block reads in reverse, so the
    first token of a two-block stack depends on the last one."""
    torch.manual_seed(0)
    x = torch.randn(1, 8, 3, 4, requires_grad=True)
    w = torch.randn(8)  # the output is layer-normed per token: a plain sum has no gradient
    (ViLStack(8, depth=1)(x)[0, :, 0, 0] * w).sum().backward()
    assert x.grad[..., 1:, :].abs().sum() == 0 and x.grad[..., 0, 1:].abs().sum() == 0
    x.grad = None
    (ViLStack(8, depth=2)(x)[0, :, 0, 0] * w).sum().backward()
    assert x.grad[0, :, -1, -1].abs().sum() > 1e-4


def test_mlstm_layer_shape_and_grad() -> None:
    layer = MLSTMLayer(16, num_heads=4)
    x = torch.randn(2, 10, 16, requires_grad=True)
    y = layer(x)
    y.square().mean().backward()
    assert y.shape == x.shape and x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", ["xlstm_unet", "xlstm_unet_enc"])
@pytest.mark.parametrize(
    ("spatial_dims", "shape"),
    [(2, (2, 1, 32, 32)), (2, (1, 2, 30, 44)), (3, (1, 1, 16, 16, 16))],
)
def test_xlstm_unet_forward_backward(name: str, spatial_dims: int, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    net = create_model(name, spatial_dims=spatial_dims, in_channels=shape[1], out_channels=3)
    x = torch.randn(shape)
    y = net(x)
    assert y.shape == (shape[0], 3, *shape[2:])
    y.square().mean().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_xlstm_unet_rejects_bottleneck_as_stage() -> None:
    with pytest.raises(ValueError):
        create_model("xlstm_unet", spatial_dims=2, in_channels=1, out_channels=2, vil_stages=(3,))
