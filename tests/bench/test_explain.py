"""``segbench explain``: saliency maps checked against hand-computed answers on linear networks,
the GradCAM layer rule, the weight-randomisation sanity check (it passes for a trained net and
fails for a net compared with itself), and the command end to end on a tiny kept run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import bench.cli.explain as explain_cli
from bench.cli import main
from bench.cli.app import COMMAND_MODULES, OneLineParser, build_parser
from bench.cli.registry import COMMANDS
from bench.config import sweep_from_dict
from bench.evaluate.explain import (
    ExplainError,
    explain_panels,
    gradcam_layer,
    map_similarity,
    parse_methods,
    randomisation_check,
    randomise_weights,
    saliency,
)
from bench.records import load_record, record_path
from bench.run import run_sweep
from tests.conftest import tiny_sweep_dict

EXPLAIN = COMMANDS["explain"]


def _linear(spatial_dims: int, w: list[float], b: float) -> nn.Module:
    """A 1×1 conv with 2 input channels and 2 classes; class 1's logit is ``w·x + b``."""
    conv = (nn.Conv2d if spatial_dims == 2 else nn.Conv3d)(2, 2, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[1, :].view(-1)[:] = torch.tensor(w)
        conv.bias[1] = b
    return conv


# ---- hand-computed maps ---------------------------------------------------------------------


def _blur_by_hand(a: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian over every axis of ``a``: kernel radius ``int(4 sigma + 0.5)``, normalised,
    edge values repeated outside (what the blur baseline promises), written out with numpy."""
    r = int(4 * sigma + 0.5)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    out = a.astype(np.float64)
    for axis in range(a.ndim):
        padded = np.pad(out, [(r, r) if i == axis else (0, 0) for i in range(a.ndim)], mode="edge")
        out = sum(k[j] * np.take(padded, range(j, j + a.shape[axis]), axis=axis) for j in range(2 * r + 1))
    return out


@pytest.mark.parametrize("baseline", ["zeros", "blur"])
@pytest.mark.parametrize("shape", [(5, 6), (3, 4, 5)])
def test_integrated_gradients_of_a_linear_net_is_w_dot_x_minus_baseline_in_the_region(
    shape, baseline
) -> None:
    w, b, sigma = [0.7, -1.3], 0.4, 0.8
    net = _linear(len(shape), w, b)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, *shape, generator=g)
    region = torch.rand(*shape, generator=g) > 0.5
    got = saliency(
        net, x, target_class=1, region=region, method="integrated_gradients", n_steps=8,
        baseline=baseline, blur_sigma=sigma,
    )  # fmt: skip
    xs = x[0].numpy().astype(np.float64)
    base = np.zeros_like(xs) if baseline == "zeros" else np.stack([_blur_by_hand(c, sigma) for c in xs])
    assert baseline == "zeros" or np.abs(base - xs).max() > 0.1  # the blur does change the image
    wd = w[0] * (xs[0] - base[0]) + w[1] * (xs[1] - base[1])
    expected = np.where(region.numpy(), wd, 0.0)
    assert got.shape == shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # completeness: F(x) - F(base) = sum over the region of w·(x - base)
    f_x = float(np.sum((w[0] * xs[0] + w[1] * xs[1] + b)[region.numpy()]))
    f_b = float(np.sum((w[0] * base[0] + w[1] * base[1] + b)[region.numpy()]))
    assert got.sum() == pytest.approx(f_x - f_b, abs=1e-4)


def test_plain_gradients_of_a_linear_net_are_the_summed_absolute_weights() -> None:
    net = _linear(2, [0.7, -1.3], 0.4)
    x = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    region = torch.zeros(4, 4, dtype=torch.bool)
    region[1:3, 0:2] = True
    got = saliency(net, x, target_class=1, region=region, method="saliency")
    np.testing.assert_allclose(got, np.where(region.numpy(), 2.0, 0.0), atol=1e-6)


def test_gradcam_of_a_linear_net_by_hand() -> None:
    # layer = the conv (A = logits); dF/dA_1 = region, dF/dA_0 = 0, so the channel weight of class
    # 1 is |region| / N and the map is ReLU(|region| / N * (w·x + b)) at every voxel
    w, b = [0.7, -1.3], 0.4
    net = _linear(2, w, b)
    x = torch.randn(1, 2, 6, 5, generator=torch.Generator().manual_seed(2))
    region = torch.zeros(6, 5, dtype=torch.bool)
    region[2:5, 1:4] = True
    got = saliency(net, x, target_class=1, region=region, method="gradcam")
    xs = x[0].numpy().astype(np.float64)
    alpha = region.sum().item() / region.numel()
    expected = np.maximum(alpha * (w[0] * xs[0] + w[1] * xs[1] + b), 0.0)
    np.testing.assert_allclose(got, expected, atol=1e-5)


class _Ordered(nn.Module):
    """Registered: late, early, down; run: early -> late -> down -> upsample -> 1×1 mix (no conv)."""

    def __init__(self, spatial_dims: int) -> None:
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        self.late = conv(4, 4, 3, padding=1)
        self.early = conv(1, 4, 3, padding=1)
        self.down = conv(4, 2, 3, stride=2, padding=1)
        self.up = nn.Upsample(scale_factor=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.late(torch.relu(self.early(x))))
        return self.up(self.down(h)) + h[:, :2]


@pytest.mark.parametrize("shape", [(8, 8), (4, 8, 8)])
def test_gradcam_reads_the_last_full_size_conv_to_run(shape) -> None:
    torch.manual_seed(0)
    net = _Ordered(len(shape)).eval()
    x = torch.randn(1, 1, *shape)
    name, module = gradcam_layer(net, x)
    # not `early` (last full-size conv in registration order), not `down` (last to run, half size)
    assert name == "late" and module is net.late
    region = torch.zeros(shape, dtype=torch.bool)
    region[..., 2:6, 2:6] = True
    cam = saliency(net, x, target_class=1, region=region, method="gradcam")
    assert cam.shape == shape and (cam >= 0).all() and cam.max() > 0


def test_gradcam_falls_back_to_the_last_conv_that_ran() -> None:
    # no conv gives the full size: the last one to run (the second), upsampled by captum
    net = nn.Sequential(nn.Conv2d(1, 3, 3, stride=2, padding=1), nn.Conv2d(3, 2, 3, padding=1))
    name, _ = gradcam_layer(net, torch.zeros(1, 1, 8, 8))
    assert name == "1"
    cam = saliency(net, torch.randn(1, 1, 8, 8), target_class=0, region=None, method="gradcam")
    assert cam.shape == (8, 8) and (cam >= 0).all()


def test_unknown_method_is_named() -> None:
    net = _linear(2, [1.0, 1.0], 0.0)
    with pytest.raises(ExplainError, match="'smoothgrad'"):
        saliency(net, torch.zeros(1, 2, 3, 3), target_class=1, method="smoothgrad")
    with pytest.raises(ExplainError, match="unknown method 'occlusion'"):
        parse_methods("gradcam,occlusion")
    assert parse_methods("gradcam, saliency,gradcam") == ["gradcam", "saliency"]


# ---- the sanity check -----------------------------------------------------------------------


def test_map_similarity_against_numpy_ranks() -> None:
    g = np.random.default_rng(0)
    a, b = g.normal(size=(9, 9)), g.normal(size=(9, 9))
    b = 0.5 * np.abs(a) + np.abs(b)  # related, no ties
    region = g.random((9, 9)) > 0.4

    def rho(x: np.ndarray, y: np.ndarray) -> float:
        rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
        return float(np.corrcoef(rx, ry)[0, 1])

    got = map_similarity(a, b, region)
    assert got["spearman"] == pytest.approx(rho(np.abs(a)[region], b[region]), abs=1e-12)
    assert got["spearman_image"] == pytest.approx(rho(np.abs(a).ravel(), b.ravel()), abs=1e-12)
    assert map_similarity(a, a)["ssim"] == pytest.approx(1.0)
    assert np.isnan(map_similarity(a, np.zeros_like(a))["spearman"])


class _TinyUNet(nn.Module):
    """One level of U-Net: conv, (pool, conv, upsample), concat, conv, 1×1 head."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU())
        self.down = nn.Sequential(
            nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2)
        )
        self.dec = nn.Sequential(nn.Conv2d(16, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.enc(x)
        return self.head(self.dec(torch.cat([e, self.down(e)], 1)))


def _squares(g: torch.Generator, n: int, size: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    """Bright 8×8 squares on noise: images ``(n, 1, size, size)``, labels ``(n, size, size)``."""
    x = torch.randn(n, 1, size, size, generator=g) * 0.5
    y = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        r, c = torch.randint(2, size - 10, (2,), generator=g).tolist()
        x[i, 0, r : r + 8, c : c + 8] += 2
        y[i, r : r + 8, c : c + 8] = 1
    return x, y


@pytest.fixture(scope="module")
def trained_squares() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A tiny U-Net trained 30 steps on squares, a new image and its predicted square."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    net = _TinyUNet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(30):
        x, y = _squares(g, 8)
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    x, y = _squares(g, 1)
    with torch.no_grad():
        pred = net(x).argmax(1)[0] == 1
    assert (pred & (y[0] == 1)).sum() / (pred | (y[0] == 1)).sum() > 0.8  # it learnt the task
    return net, x, pred


def test_randomised_weights_change_integrated_gradients(trained_squares) -> None:
    net, x, region = trained_squares
    before = {k: v.clone() for k, v in net.state_dict().items()}
    check = randomisation_check(net, x, target_class=1, region=region, method="integrated_gradients")
    assert check["passed"] and abs(check["spearman"]) < 0.5 and check["threshold"] == 0.5
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # a copy was reset
    again = randomise_weights(net, seed=0)
    other = randomise_weights(net, seed=1)
    assert torch.equal(again.head.weight, randomise_weights(net, seed=0).head.weight)
    assert not torch.equal(again.head.weight, other.head.weight)
    assert not torch.equal(again.head.weight, net.head.weight)


def test_a_net_compared_with_itself_fails_the_check(trained_squares) -> None:
    net, x, region = trained_squares
    check = randomisation_check(
        net, x, target_class=1, region=region, method="integrated_gradients", randomised=net
    )
    assert not check["passed"]
    assert check["spearman"] == pytest.approx(1.0) and check["ssim"] == pytest.approx(1.0)


# ---- the command on a kept run ----------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One tiny done run (2 steps, synthetic vessels 64×64) with its kept model: (results, run id)."""
    results = tmp_path_factory.mktemp("explain-runs")
    (record,) = run_sweep(sweep_from_dict(tiny_sweep_dict()), results, progress=False)
    assert record.done, record.error
    return results, record.run_id


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(COMMANDS, "explain", EXPLAIN)


def _test_case(results: Path, run_id: str) -> str:
    record = load_record(record_path(results, run_id))
    return sorted(c["case_id"] for c in record.cases)[0]


def test_explain_writes_maps_figure_and_sanity(trained_run, registered, capsys) -> None:
    results, run_id = trained_run
    case = _test_case(results, run_id)
    argv = ["explain", run_id, "--case", case, "--results", str(results), "--steps", "4"]
    code = main([*argv, "--methods", "integrated_gradients,gradcam,saliency", "--sanity", "--quiet"])
    assert code == 0, capsys.readouterr().err
    folder = results / "explain" / run_id / case
    info = json.loads((folder / "explain.json").read_text())
    assert info["run_id"] == run_id and info["case_id"] == case and info["class"] == 1
    assert info["region_from"] in ("prediction", "label") and info["region_voxels"] > 0
    assert set(info["methods"]) == {"integrated_gradients", "gradcam", "saliency"}
    assert info["methods"]["integrated_gradients"]["n_steps"] == 4
    assert info["methods"]["gradcam"]["layer"]
    import captum

    assert info["captum_version"] == captum.__version__
    assert set(info["sanity"]) == set(info["methods"])
    for check in info["sanity"].values():
        assert {"spearman", "spearman_image", "ssim", "threshold", "passed"} <= set(check)
    for method in info["methods"]:
        arr = np.load(folder / f"{method}.npy")
        assert arr.dtype == np.float32 and list(arr.shape) == info["image_shape"] == [64, 64]
    assert (folder / "explain.png").stat().st_size > 0
    (panel,) = explain_panels(results, run_id)
    assert panel["case_id"] == case and panel["href"] == f"explain/{run_id}/{case}/explain.png"
    assert panel["methods"] == sorted(info["methods"]) and set(panel["sanity"]) == set(info["methods"])
    assert explain_panels(results, "no-such-run") == []


def test_explain_handler_called_directly(trained_run, tmp_path) -> None:
    results, run_id = trained_run
    parser = OneLineParser(prog="segbench explain")
    explain_cli.add_arguments(parser)
    case = _test_case(results, run_id)
    args = parser.parse_args([run_id, "--case", case, "--results", str(results), "--quiet"])
    assert args.methods == "integrated_gradients,gradcam" and not args.sanity
    assert explain_cli.main(args) == 0
    info = json.loads((results / "explain" / run_id / case / "explain.json").read_text())
    assert info["sanity"] is None


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--case", "nope"], "--case 'nope': not a case of run {run}'s dataset synthetic_vessels ("),
        (["--methods", "lime"], "--methods: unknown method 'lime'"),
        (["--class", "2"], "--class 2: run {run} has classes 0..1"),
    ],
)
def test_bad_input_is_one_line(trained_run, registered, capsys, extra, expected) -> None:
    results, run_id = trained_run
    argv = ["explain", run_id, "--results", str(results), "--quiet"]
    if "--case" not in extra:
        argv += ["--case", _test_case(results, run_id)]
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert expected.format(run=run_id) in err


def test_an_unknown_run_is_one_line(tmp_path, registered, capsys) -> None:
    assert main(["explain", "run-x", "--case", "c", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "run-x: no run record" in err


def test_explain_help(capsys) -> None:
    build_parser()  # imports the app's command modules
    assert "bench.cli.explain" in COMMAND_MODULES and "explain" in COMMANDS
    with pytest.raises(SystemExit) as e:
        main(["explain", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--case" in out and "--sanity" in out and "--methods" in out


def test_an_empty_prediction_falls_back_to_the_label(trained_run, monkeypatch, capsys) -> None:
    import bench.evaluate.explain as ex

    def background(model, image):  # every voxel predicted background
        prob = np.zeros((2, *image.shape[1:]), np.float32)
        prob[0] = 1
        return prob

    monkeypatch.setattr(ex, "predict_case", background)
    results, run_id = trained_run
    case = _test_case(results, run_id)
    out = ex.explain(run_id, case, results=results, methods="saliency", progress=False)
    assert out.info["region_from"] == "label"
    assert "not predicted; explaining the label's region" in capsys.readouterr().err
    from bench.evaluate.predict import find_model, load_model

    dm = ex.make_datamodule(load_model(find_model(run_id, results)))
    dm.setup("test")
    assert out.info["region_voxels"] == int((np.asarray(dm.case(case).label) == 1).sum()) > 0


def test_a_3d_figure_shows_the_slice_with_most_region(tmp_path) -> None:
    from bench.evaluate.explain import _slice_of, write_figure

    region = np.zeros((6, 7, 5), bool)
    region[1:3, 1:3, 1] = True  # 4 voxels on slice 1
    region[1:4, 1:4, 3] = True  # 9 voxels on slice 3
    assert _slice_of(region) == 3 and _slice_of(region[..., 3]) is None
    maps = {"integrated_gradients": np.random.default_rng(0).normal(size=region.shape).astype(np.float32)}
    path = write_figure(tmp_path / "f.png", np.zeros((1, *region.shape), np.float32), region, maps)
    assert path.is_file() and path.read_bytes()[:4] == b"\x89PNG"


def test_an_odd_sized_image_whose_logits_do_not_fit_is_padded_and_cropped_back() -> None:
    """CHASE_DB1's 999x960 images: a U-Net's logits come back larger than an odd-sized input; the
    maps are computed on the image padded to a multiple of 32 and cropped back to its size."""
    from models import create_model

    torch.manual_seed(0)
    net = create_model("unet", spatial_dims=2, in_channels=1, out_channels=2, channels=[4, 8, 16]).eval()
    image = torch.randn(1, 1, 35, 31)  # logits come back 36 x 32
    with torch.no_grad():
        assert tuple(net(image).shape[2:]) == (36, 32)  # the case this handles
    region = torch.zeros(35, 31, dtype=torch.bool)
    region[10:20, 12:22] = True
    for method in ("integrated_gradients", "gradcam", "saliency"):
        m = saliency(net, image, target_class=1, region=region, method=method, n_steps=4)
        assert m.shape == (35, 31) and np.isfinite(m).all() and np.abs(m).sum() > 0


def test_the_figure_image_is_not_saturated_by_a_black_border() -> None:
    """A fundus-like image: a dark border at -3 (normalised background) around a bright disc with
    structure; the shown image keeps the disc's contrast (few pixels clipped) and RGB stays RGB."""
    from bench.evaluate.explain import display_image

    g = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 32) ** 2 + (xx - 32) ** 2 < 28**2
    chan = np.where(disc, 1.0 + 0.2 * g.standard_normal((64, 64)), -3.0)
    shown = display_image(np.stack([chan, chan * 0.5, chan * 0.2]))
    assert shown.shape == (64, 64, 3)
    inside = shown[disc][:, 0]
    assert np.mean((inside <= 0) | (inside >= 1)) < 0.05  # 1st-99th percentile of the disc: ~2% clipped
    assert inside.std() > 0.1  # spread over the grey range, not white
    assert display_image(chan[None]).shape == (64, 64)
