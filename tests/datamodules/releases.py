"""Tiny synthetic releases in the public layouts and file formats of every dataset shipped as archives.

:data:`RELEASES` maps a dataset name to a :class:`Release`: ``write(folder)`` writes the layout
as the archives unpack it (3-4 tiny cases), ``archives`` says which files of that layout go into
which release file (named exactly as the dataset's ``resources``), and ``by_hand`` lists files a
user adds after unpacking (the chest X-ray images are not in the landmark repository).
"""

from __future__ import annotations

import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from .conftest import fundus_like, save_png

CXR_WRAP = "Chest-xray-landmark-dataset-2169d894f141dbea01bff1bd9d0ef8ea686fee9c"


@dataclass(frozen=True)
class Release:
    """``archives``: release file name -> (sub-folder of the layout, flat members?)."""

    write: Callable[[Path], None]
    archives: dict[str, tuple[str, bool]]
    by_hand: tuple[str, ...] = ()
    kwargs: dict = field(default_factory=dict)


def _drive(folder: Path) -> None:
    rng = np.random.default_rng(0)
    for num, part in (("21", "training"), ("22", "training"), ("23", "training"), ("01", "test")):
        rgb, lab = fundus_like(rng)
        save_png(folder / part / "images" / f"{num}_{part}.tif", rgb)
        save_png(folder / part / "mask" / f"{num}_{part}_mask.gif", (rgb[..., 0] > 50).astype(np.uint8) * 255)
        if part == "training":  # the grand-challenge test.zip has no annotations
            save_png(folder / part / "1st_manual" / f"{num}_manual1.gif", lab)


def _chase(folder: Path) -> None:
    rng = np.random.default_rng(0)
    for stem in ("Image_01L", "Image_02L", "Image_11L"):
        rgb, lab = fundus_like(rng)
        save_png(folder / f"{stem}.jpg", rgb)
        save_png(folder / f"{stem}_1stHO.png", lab, mode="1")
        lab2 = lab.copy()
        lab2[:10] = 0
        save_png(folder / f"{stem}_2ndHO.png", lab2, mode="1")


def _stare(folder: Path) -> None:
    rng = np.random.default_rng(0)
    for cid in ("im0001", "im0002", "im0003", "im0004"):
        rgb, lab = fundus_like(rng)
        save_png(folder / "stare-images" / f"{cid}.ppm.gz", rgb)
        save_png(folder / "labels-ah" / f"{cid}.ah.ppm.gz", np.repeat(lab[..., None], 3, -1))
        save_png(folder / "labels-vk" / f"{cid}.vk.ppm.gz", np.repeat(lab[..., None], 3, -1))


def _hrf(folder: Path) -> None:
    rng = np.random.default_rng(0)
    for stem in ("01_h", "02_g", "03_dr", "04_h"):
        rgb, lab = fundus_like(rng)
        save_png(folder / "images" / f"{stem}.jpg", rgb)
        save_png(folder / "manual1" / f"{stem}.tif", lab)
        fov = np.repeat(((rgb[..., 0] > 50) * 255)[..., None], 3, -1)
        save_png(folder / "mask" / f"{stem}_mask.tif", fov)


def _cxr(folder: Path) -> None:
    top = folder / CXR_WRAP
    (top / "Images").mkdir(parents=True)
    (top / "Images" / ".gitkeep").write_bytes(b"")
    counts = {"RL": 44, "LL": 50, "H": 26, "RCLA": 23, "LCLA": 23}
    centres = {"RL": (16, 30), "LL": (48, 30), "H": (34, 44), "RCLA": (16, 8), "LCLA": (48, 8)}
    rng = np.random.default_rng(0)
    for cid in ("JPCLN001", "JPCLN002", "JPCLN003"):
        save_png(top / "Images" / f"{cid}.png", rng.integers(0, 255, (64, 64)).astype(np.uint8))
        for organ, n in counts.items():
            t = np.linspace(0, 2 * np.pi, n, endpoint=False)
            cx, cy = centres[organ]
            xy = np.stack([cx + 6 * np.cos(t), cy + 5 * np.sin(t)], 1)
            (top / "landmarks" / organ).mkdir(parents=True, exist_ok=True)
            np.save(top / "landmarks" / organ / f"{cid}.npy", xy.astype(np.float32))


def _msd(task: str, num_classes: int) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        rng = np.random.default_rng(0)
        for i in range(3):
            for sub in ("imagesTr", "labelsTr"):
                (folder / task / sub).mkdir(parents=True, exist_ok=True)
            lab = np.zeros((10, 9, 8), np.uint8)
            for c in range(1, num_classes):
                lab[2 * c : 2 * c + 2, 2:6, 2:6] = c
            img = rng.normal(0, 100, lab.shape).astype(np.float32)
            nib.save(nib.Nifti1Image(img, np.eye(4)), folder / task / "imagesTr" / f"case_{i}.nii.gz")
            nib.save(nib.Nifti1Image(lab, np.eye(4)), folder / task / "labelsTr" / f"case_{i}.nii.gz")

    return write


RELEASES: dict[str, Release] = {
    "drive": Release(_drive, {"training.zip": ("training", False), "test.zip": ("test", False)}),
    "chase_db1": Release(_chase, {"CHASEDB1.zip": (".", True)}),
    "stare": Release(
        _stare,
        {n: (n.removesuffix(".tar"), True) for n in ("stare-images.tar", "labels-ah.tar", "labels-vk.tar")},
    ),
    "hrf": Release(_hrf, {"all.zip": (".", False)}),
    "cxr_landmarks": Release(
        _cxr,
        {"Chest-xray-landmark-dataset.zip": (".", False)},
        by_hand=(
            f"{CXR_WRAP}/Images/JPCLN001.png",
            f"{CXR_WRAP}/Images/JPCLN002.png",
            f"{CXR_WRAP}/Images/JPCLN003.png",
        ),
        kwargs={"scale": 1.0, "patch_size": (32, 32)},
    ),
    "msd_hippocampus": Release(_msd("Task04_Hippocampus", 3), {"Task04_Hippocampus.tar": (".", False)}),
    "msd_hepatic_vessel": Release(
        _msd("Task08_HepaticVessel", 3), {"Task08_HepaticVessel.tar": (".", False)}
    ),
    "msd_spleen": Release(_msd("Task09_Spleen", 2), {"Task09_Spleen.tar": (".", False)}),
}


def pack(layout: Path, release: Release, out: Path) -> dict[str, Path]:
    """Write the release files of ``layout`` into ``out``; returns ``{file name: path}``."""
    out.mkdir(parents=True, exist_ok=True)
    made = {}
    for name, (sub, flat) in release.archives.items():
        files = sorted(p for p in (layout / sub).rglob("*") if p.is_file())
        files = [p for p in files if p.relative_to(layout).as_posix() not in release.by_hand]
        arcnames = [p.name if flat else p.relative_to(layout).as_posix() for p in files]
        path = out / name
        if name.endswith(".zip"):
            with zipfile.ZipFile(path, "w") as zf:
                for p, a in zip(files, arcnames, strict=True):
                    zf.write(p, a)
        else:
            with tarfile.open(path, "w") as tf:
                for p, a in zip(files, arcnames, strict=True):
                    tf.add(p, arcname=a)
        made[name] = path
    return made
