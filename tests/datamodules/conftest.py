"""Fixtures for the DataModule tests: the shared real-data folder and tiny release builders.

Real-data tests read ``$SEGBENCH_SHARED_DATA/<folder>`` (default ``../shared/data`` next to
the repository). When ``SEGBENCH_SHARED_DATA`` is set, a missing folder FAILS the test; when it
is unset and the folder is absent, the test is skipped.
"""

from __future__ import annotations

import gzip
import http.server
import io
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datamodules.base import CaseRef, SegDataModule

REPO = Path(__file__).resolve().parents[2]
_ENV = "SEGBENCH_SHARED_DATA"


def shared_root(folder: str) -> Path:
    """Path of the shared copy of ``folder``; fail (env var set) or skip (unset) when absent."""
    base = os.environ.get(_ENV)
    path = Path(base if base else REPO.parent / "shared" / "data") / folder
    if not path.is_dir():
        if base:
            pytest.fail(f"{_ENV}={base} is set but {path} is missing")
        pytest.skip(f"{path} is absent ({_ENV} unset)")
    return path


class TableDataModule(SegDataModule):
    """``img_i.png`` + ``lab_i.png`` (annotator a) + ``lab2_i.png`` (annotator b) + ``fov_i.png``."""

    name = "table_test"
    in_channels = 3
    default_patch_size = (16, 16)
    folder = "TABLE"
    num_cases = 6
    annotators = ("a", "b")

    def list_cases(self) -> list[CaseRef]:
        refs = []
        for img in self.find_files("img_*.png"):
            i = img.stem.split("_")[1]
            labels = {"a": img.with_name(f"lab_{i}.png"), "b": img.with_name(f"lab2_{i}.png")}
            refs.append(
                CaseRef(f"c{i}", None, {"image": img, "labels": labels, "fov": img.with_name(f"fov_{i}.png")})
            )
        return refs


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """A private split-file cache per test."""
    return tmp_path / "cache"


def save_png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    """Write ``array`` (H, W[, 3]) uint8 as an image file (format from the suffix, ``.gz`` compresses)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array.astype(np.uint8))
    if mode:
        img = img.convert(mode)
    if path.suffix == ".gz":
        buf = io.BytesIO()
        img.save(buf, format=Path(path.stem).suffix.lstrip(".").upper())
        path.write_bytes(gzip.compress(buf.getvalue()))
    else:
        img.save(path)
    return path


def save_nifti(
    path: Path,
    array: np.ndarray,
    spacing: tuple[float, ...] = (1.0, 1.0, 1.0),
    affine: np.ndarray | None = None,
) -> Path:
    """Write ``array`` as NIfTI (``affine`` default: ``diag(spacing)``), creating the folder."""
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([*spacing, 1.0]) if affine is None else affine), path)
    return path


def write_nnunet_json(root: Path, **fields: object) -> Path:
    """``root/dataset.json`` (nnU-Net v2): one CT channel, labels background / a / b, ``.nii.gz``,
    with ``fields`` replacing or adding keys (a value None drops the key)."""
    import json

    spec: dict[str, object] = {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "a": 1, "b": 2},
        "numTraining": 1,
        "file_ending": ".nii.gz",
    }
    spec.update(fields)
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps({k: v for k, v in spec.items() if v is not None}))
    return root / "dataset.json"


def hippocampus_nnunet(dst: Path, train: tuple[str, ...], test: tuple[str, ...] = ()) -> Path:
    """Real MSD Hippocampus cases (``hippocampus_<id>``) as an nnU-Net v2 raw dataset: images
    renamed ``_0000``, ``dataset.json`` with one channel ``T1`` and the labels ``head``, ``body``;
    ``test`` cases go to ``imagesTs`` / ``labelsTs``. The files are copied under ``dst`` (a temp
    folder), never into the repository."""
    import shutil

    src = shared_root("MSD_Task04_Hippocampus")
    for ids, (img, lab) in ((train, ("imagesTr", "labelsTr")), (test, ("imagesTs", "labelsTs"))):
        for sub in (img, lab):
            (dst / sub).mkdir(parents=True, exist_ok=True)
        for n in ids:
            shutil.copyfile(
                src / "imagesTr" / f"hippocampus_{n}.nii.gz", dst / img / f"hippocampus_{n}_0000.nii.gz"
            )
            shutil.copyfile(
                src / "labelsTr" / f"hippocampus_{n}.nii.gz", dst / lab / f"hippocampus_{n}.nii.gz"
            )
    write_nnunet_json(
        dst, channel_names={"0": "T1"}, labels={"background": 0, "head": 1, "body": 2}, numTraining=len(train)
    )
    return dst


def fundus_like(rng: np.random.Generator, shape: tuple[int, int] = (40, 48)) -> tuple[np.ndarray, np.ndarray]:
    """A tiny RGB 'fundus' (bright disc, darker vessel lines) and its vessel mask {0, 255}."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    disc = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2) < (min(h, w) / 2 - 1) ** 2
    vessels = np.zeros(shape, bool)
    vessels[h // 3, 4:-4] = True
    vessels[4:-4, int(rng.integers(8, w - 8))] = True
    rgb = np.zeros((h, w, 3), np.float64)
    rgb[disc] = (180, 120, 60)
    rgb[vessels & disc] = (150, 60, 30)
    rgb += rng.normal(0, 3, rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8), (vessels * 255).astype(np.uint8)


@pytest.fixture
def make_file_table(tmp_path: Path) -> Callable[..., Path]:
    """Build ``n`` cases as ``img_i.png`` / ``lab_i.png`` (+ ``lab2_i.png``, ``fov_i.png``) in a folder."""

    def build(n: int = 6, folder: str = "table") -> Path:
        root = tmp_path / folder
        rng = np.random.default_rng(0)
        for i in range(n):
            rgb, lab = fundus_like(rng)
            save_png(root / f"img_{i}.png", rgb)
            save_png(root / f"lab_{i}.png", lab)
            lab2 = lab.copy()
            lab2[: lab.shape[0] // 2] = 0
            save_png(root / f"lab2_{i}.png", lab2)
            save_png(root / f"fov_{i}.png", (rgb[..., 0] > 50).astype(np.uint8) * 255)
        return root

    return build


def train_one_step(dm) -> float:
    """One forward/backward of a tiny U-Net through ``SegmentationModule`` on a training batch."""
    import warnings

    import torch

    from models import SegmentationModule, create_loss, create_model

    net = create_model(
        "unet",
        spatial_dims=dm.spatial_dims,
        in_channels=dm.in_channels,
        out_channels=dm.num_classes,
        channels=(4, 8),
    )
    module = SegmentationModule(
        net, create_loss("dice_ce"), num_classes=dm.num_classes, roi_size=dm.patch_size
    )
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (dm.batch_size, dm.in_channels, *dm.patch_size)
    assert batch["label"].shape == (dm.batch_size, 1, *dm.patch_size) and batch["label"].dtype == torch.int64
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*self.log.*")
        loss = module.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    return float(loss.detach())


def ring_contrast(
    channel: np.ndarray, label: np.ndarray, fov: np.ndarray | None = None, width: int = 4
) -> float:
    """Mean of ``channel`` on the foreground minus its mean on a ``width``-pixel ring (inside FOV)."""
    from scipy import ndimage

    fg = label.astype(bool)
    inside = np.ones_like(fg) if fov is None else fov
    ring = ndimage.binary_dilation(fg, iterations=width) & ~fg & inside
    return float(channel[fg & inside].mean() - channel[ring].mean())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """A local HTTP server on 127.0.0.1 serving ``tmp_path/srv``; yields (base URL, folder, request log)."""
    srv = tmp_path / "srv"
    srv.mkdir()
    log: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(srv), **kw)

        def do_GET(self):  # noqa: N802 (http.server API)
            log.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", srv, log
    httpd.shutdown()
    httpd.server_close()
