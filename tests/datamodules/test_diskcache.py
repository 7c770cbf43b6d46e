"""The disk cache of loaded cases (datamodules/diskcache.py, docs/cache.md): entries equal to what
``load_case`` returns, a key that follows every setting that changes a case and no other, bad cases
never cached, atomic and concurrent writes, memory-mapped training without arrays in pickles, the
switch to turn it off and ``segbench cache``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing as mp
import os
import pickle
import queue
import subprocess
import sys
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from bench.errors import UserError
from datamodules import CaseLoadError, DataArgumentError, create_datamodule
from datamodules import diskcache as dc
from datamodules.base import CaseRef, SegDataModule
from datamodules.sampling import EpochSampler
from datamodules.synthetic import generate_vessels

from .conftest import shared_root

REPO = Path(__file__).resolve().parents[2]
N_CASES = 5


class ArrayDataModule(SegDataModule):
    """Cases from ``img_<i>.npy`` ``(1, 12, 10)`` and ``lab_<i>.npy`` under ``root``, with every
    kind of extra; ``gain`` is an argument of its own, stored under another name."""

    name = "array_test"
    num_classes = 3
    default_patch_size = (8, 8)
    annotators = ("a", "b")
    _loads = 0  # load_case calls, in this process (private: not a setting)

    def __init__(self, root: Any = None, *, gain: float = 1.0, **kwargs: Any) -> None:
        super().__init__(root, **{"num_folds": 2, **kwargs})
        self.amplification = gain

    def list_cases(self) -> list[CaseRef]:
        return [
            CaseRef(p.stem.split("_")[1], None, {"image": p, "label": p.with_name(f"lab_{p.stem[4:]}.npy")})
            for p in self.find_files("img_*.npy")
        ]

    def load_case(self, ref: CaseRef):
        type(self)._loads += 1
        image = np.load(ref.info["image"]) * self.amplification
        label = np.load(ref.info["label"]).astype(np.int64)
        if label.max() >= self.num_classes:
            raise CaseLoadError(f"{ref.info['label']}: label {label.max()} >= {self.num_classes}")
        extras = {
            "original_label": label.copy(),
            "landmarks": np.array([[0.25, 0.5], [0.75, 0.125]], dtype=np.float32),
            "original_shape": (12, 10),
            "stats": {"mean": np.float32(1.5), "n": np.int64(3), "none": None, "names": ["x", "y"]},
            "by_axis": {0: 1.0, 1: (2, 3)},
            "weights": np.float64(0.25),
        }
        labels = {"a": label, "b": (label > 1).astype(np.int64)}
        return self.make_case(
            ref.case_id, image, labels, fov=image[0] > -2.5, spacing=(0.5, 2.0), extras=extras
        )


class WideDataModule(ArrayDataModule):
    """300 classes: labels need uint16."""

    name = "wide_test"
    num_classes = 300


def _write_arrays(root: Path, n: int = N_CASES, high: int = 3, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        np.save(root / f"img_{i}.npy", rng.normal(size=(1, 12, 10)).astype(np.float32))
        lab = rng.integers(0, high, size=(12, 10))
        lab[0, 0] = high - 1  # the largest value always occurs
        np.save(root / f"lab_{i}.npy", lab)
    return root


def _entries(cache: Path) -> list[Path]:
    root = cache / "cases"
    return sorted(p for p in root.iterdir() if not p.name.startswith(".")) if root.is_dir() else []


def _partials(cache: Path) -> list[Path]:
    root = cache / "cases"
    return sorted(p for p in root.iterdir() if p.name.startswith(".partial-")) if root.is_dir() else []


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same types, recursively (arrays: same dtype and values)."""
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


# ---- entries equal what load_case returned ----------------------------------------------------


def test_an_entry_reads_back_what_load_case_returned(tmp_path):
    root, cache = _write_arrays(tmp_path / "data"), tmp_path / "cache"
    dm = ArrayDataModule(root, cache_dir=cache)
    dm.setup()
    assert dm._cache == {} and len(_entries(cache)) == N_CASES  # nothing in RAM, every case on disk
    for cid, ref in dm._refs.items():
        want, got = dm.load_case(ref), dm.case(cid)
        assert isinstance(got.image, np.memmap) and got.image.dtype == np.float32
        assert _same(want.image, np.asarray(got.image)) and _same(want.label, got.label)  # int64 again
        assert _same(want.fov, np.asarray(got.fov)) and got.spacing == want.spacing == (0.5, 2.0)
        assert want.extras.keys() == got.extras.keys()
        for key, value in want.extras.items():
            assert _same(
                value, np.asarray(got.extras[key]) if isinstance(value, np.ndarray) else got.extras[key]
            )
        got.image[0, 0, 0] = 99.0  # copy-on-write: the caller may write, the entry stays
        assert dm.case(cid).image[0, 0, 0] == want.image[0, 0, 0]
    entry = dm._entry(cid)
    stored = np.load(entry / "label.npy")
    assert stored.dtype == np.uint8 and np.array_equal(stored, np.load(root / f"lab_{cid}.npy"))
    fg = np.load(entry / "foreground.npy")
    assert np.array_equal(fg, np.flatnonzero(np.load(root / f"lab_{cid}.npy").ravel() > 0))
    assert not (entry / "extra_0.npy").exists()  # label_a is the label itself: stored once


def test_labels_beyond_255_are_stored_as_uint16(tmp_path):
    root, cache = _write_arrays(tmp_path / "data", n=3, high=300), tmp_path / "cache"
    dm = WideDataModule(root, cache_dir=cache)
    dm.setup()
    for cid in dm._refs:
        assert np.load(dm._entry(cid) / "label.npy").dtype == np.uint16
        assert np.array_equal(dm.case(cid).label, np.load(root / f"lab_{cid}.npy"))
        assert dm.case(cid).label.max() == 299


def test_real_release_case_matches_nibabel(tmp_path):
    """MSD Hippocampus as released: the cached label is the NIfTI file's, the image the decoded one."""
    root = shared_root("MSD_Task04_Hippocampus")
    dm = create_datamodule("msd_hippocampus", root=root, cache_dir=tmp_path, limit_cases=1, num_folds=2)
    dm.setup()
    for cid in [c for ids in dm.splits.values() for c in ids]:
        truth = np.asanyarray(nib.load(root / "labelsTr" / f"{cid}.nii.gz").dataobj)
        case = dm.case(cid)
        assert case.label.dtype == np.int64 and np.array_equal(case.label, truth)
        assert np.array_equal(np.asarray(case.image), dm.load_case(dm._refs[cid]).image)


def test_batches_keep_their_documented_dtypes(tmp_path):
    dm = ArrayDataModule(_write_arrays(tmp_path / "data"), cache_dir=tmp_path / "c", batch_size=2)
    dm.setup()
    train = next(iter(dm.train_dataloader()))
    assert train["image"].dtype == torch.float32 and train["label"].dtype == torch.int64
    val = next(iter(dm.val_dataloader()))
    assert val["image"].dtype == torch.float32 and val["label"].dtype == torch.int64
    assert val["label_b"].dtype == torch.int64 and val["fov"].dtype == torch.bool


def test_synthetic_cases_are_the_generators(tmp_path):
    dm = create_datamodule(
        "synthetic_vessels", size=(32, 32), num_train=2, num_val=1, num_test=1, cache_dir=tmp_path
    )
    dm.setup()
    for i, cid in enumerate(dm.splits["train"] + dm.splits["val"] + dm.splits["test"]):
        image, label = generate_vessels((32, 32), 0, i)
        case = dm.case(cid)
        assert np.array_equal(np.asarray(case.image)[0], image) and np.array_equal(case.label, label)
        assert case.label.dtype == np.int64


# ---- the key ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batch_size": 2, "patch_size": (4, 4), "samples_per_epoch": 3, "fg_oversample": 0.9},
        {"augment": {"flip": 0.5}, "seed": 7, "num_workers": 1, "multi_rater": True},
        {"fold": 1, "num_folds": 2, "split_seed": 3, "limit_cases": 2, "on_bad_case": "raise"},
        {"disk_cache": True},
    ],
)
def test_loader_settings_reuse_the_entries(tmp_path, kwargs):
    root, cache = _write_arrays(tmp_path / "data"), tmp_path / "cache"
    ArrayDataModule(root, cache_dir=cache).setup()
    before = ArrayDataModule._loads
    dm = ArrayDataModule(root, cache_dir=cache, **kwargs)
    dm.setup()
    dm.case(next(iter(dm._refs)))
    assert ArrayDataModule._loads == before and len(_entries(cache)) == N_CASES


@pytest.mark.parametrize("change", [{"scale": 0.5}, {"annotator": "b"}, {"gain": 2.0}, "raw_intensities"])
def test_settings_that_change_a_case_decode_again(tmp_path, change):
    root, cache = _write_arrays(tmp_path / "data"), tmp_path / "cache"
    first = ArrayDataModule(root, cache_dir=cache)
    first.setup()
    before = ArrayDataModule._loads
    dm = ArrayDataModule(root, cache_dir=cache, **(change if isinstance(change, dict) else {}))
    if change == "raw_intensities":
        dm.raw_intensities = True  # what datamodules.fingerprint sets on an instance
    dm.setup()
    assert ArrayDataModule._loads == before + N_CASES and len(_entries(cache)) == 2 * N_CASES
    cid = next(iter(dm._refs))
    want = dm.load_case(dm._refs[cid])
    assert _same(want.image, np.asarray(dm.case(cid).image)) and _same(want.label, dm.case(cid).label)
    old = first.case(cid)
    assert not (_same(np.asarray(old.image), want.image) and _same(old.label, want.label))


def test_a_changed_source_file_decodes_that_case_again(tmp_path):
    root, cache = _write_arrays(tmp_path / "data"), tmp_path / "cache"
    ArrayDataModule(root, cache_dir=cache).setup()
    new = np.full((1, 12, 10), 3.0, dtype=np.float32)
    new[0, 0, :5] = -3.0
    np.save(root / "img_2.npy", new)
    before = ArrayDataModule._loads
    dm = ArrayDataModule(root, cache_dir=cache)
    dm.setup()
    assert ArrayDataModule._loads == before + 1
    assert np.array_equal(np.asarray(dm.case("2").image), dm.load_case(dm._refs["2"]).image)


_KEY_PROBE = """
import json, sys
from datamodules import create_datamodule
for name, kw in json.loads(sys.argv[1]):
    dm = create_datamodule(name, cache_dir=sys.argv[2], **kw)
    print(dm.case_key(dm.list_cases()[0]))
"""


def test_the_key_is_the_same_in_a_new_process(tmp_path):
    """A key holding a memory address or a set's order would never hit again: compare two processes."""
    datasets = [
        ("synthetic_vessels_3d", {"size": [16, 16, 16], "num_train": 2}),
        ("msd_hippocampus", {"root": str(shared_root("MSD_Task04_Hippocampus")), "scale": 0.5}),
    ]
    here = []
    for name, kw in datasets:
        dm = create_datamodule(name, cache_dir=tmp_path, **kw)
        here.append(dm.case_key(dm.list_cases()[0]))
    out = subprocess.run(
        [sys.executable, "-c", _KEY_PROBE, json.dumps(datasets), str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == here


# ---- bad cases ----------------------------------------------------------------------------------


def test_bad_cases_are_skipped_every_time_and_never_cached(tmp_path):
    root, cache = _write_arrays(tmp_path / "data"), tmp_path / "cache"
    bad = np.load(root / "lab_3.npy")
    bad[1, 1] = 7
    np.save(root / "lab_3.npy", bad)
    with pytest.raises(CaseLoadError, match="lab_3.npy"):
        ArrayDataModule(root, cache_dir=cache, on_bad_case="raise").setup()
    for _ in range(2):
        before = ArrayDataModule._loads
        dm = ArrayDataModule(root, cache_dir=cache, on_bad_case="skip", num_folds=2)
        with pytest.warns(UserWarning, match="skipped 1 bad case"):
            dm.setup()
        assert list(dm.skipped) == ["3"] and "lab_3.npy" in dm.split_info()["skipped"]["3"]
        assert len(_entries(cache)) == N_CASES - 1
    assert ArrayDataModule._loads == before + 1  # the second time only the bad case was read


# ---- atomic and concurrent writes -----------------------------------------------------------------


def test_an_error_between_files_leaves_no_entry(tmp_path, monkeypatch):
    root, cache = _write_arrays(tmp_path / "data"), tmp_path / "cache"
    real = dc._save

    def failing(folder: Path, name: str, arr: np.ndarray) -> dict[str, Any]:
        if name == "fov":
            raise OSError("disk full (simulated)")
        return real(folder, name, arr)

    monkeypatch.setattr(dc, "_save", failing)
    with pytest.raises(OSError, match="simulated"):
        ArrayDataModule(root, cache_dir=cache).setup()
    assert _entries(cache) == [] and _partials(cache) == []
    monkeypatch.setattr(dc, "_save", real)
    dm = ArrayDataModule(root, cache_dir=cache)
    dm.setup()
    assert len(_entries(cache)) == N_CASES
    assert np.array_equal(dm.case("0").label, np.load(root / "lab_0.npy"))


def _killed_writer(root: str, cache: str) -> None:
    real = dc._save

    def dies(folder: Path, name: str, arr: np.ndarray) -> dict[str, Any]:
        if name == "fov":
            os._exit(9)  # killed between two files: no cleanup runs
        return real(folder, name, arr)

    dc._save = dies
    ArrayDataModule(Path(root), cache_dir=cache).setup()


def test_a_killed_writer_leaves_only_a_partial_folder(tmp_path):
    root, cache = _write_arrays(tmp_path / "data"), tmp_path / "cache"
    proc = mp.get_context("fork").Process(target=_killed_writer, args=(str(root), str(cache)))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 9
    assert _entries(cache) == [] and len(_partials(cache)) == 1
    assert (_partials(cache)[0] / "image.npy").is_file()  # it was killed mid-write
    usage = dc.cache_usage(cache)
    assert (usage.entries, usage.partial) == (0, 1)
    before = ArrayDataModule._loads
    dm = ArrayDataModule(root, cache_dir=cache)
    dm.setup()
    assert ArrayDataModule._loads == before + N_CASES and len(_entries(cache)) == N_CASES
    assert np.array_equal(dm.case("0").label, np.load(root / "lab_0.npy"))


def _filler(root: str, cache: str, barrier: Any, out: Any) -> None:
    real = dc.write_entry

    def slow(folder: Path, case: Any) -> None:
        real(folder, case)
        import time

        time.sleep(0.3)  # both processes are writing the same entry now

    dc.write_entry = slow
    dm = ArrayDataModule(Path(root), cache_dir=cache)
    barrier.wait(30)
    dm.setup()
    digests = {
        cid: hashlib.sha256(
            np.asarray(dm.case(cid).image).tobytes() + dm.case(cid).label.tobytes()
        ).hexdigest()
        for cid in dm._refs
    }
    out.put((dm._store.written, dm._store.lost_races, digests))


def test_two_processes_fill_one_cache(tmp_path):
    root, cache = _write_arrays(tmp_path / "data"), tmp_path / "cache"
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_filler, args=(str(root), str(cache), barrier, out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = []
    while len(results) < len(procs) and (any(p.is_alive() for p in procs) or not out.empty()):
        with contextlib.suppress(queue.Empty):
            results.append(out.get(timeout=1))
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    written, lost = sum(r[0] for r in results), sum(r[1] for r in results)
    assert written == N_CASES and lost >= 1  # each entry renamed once; the losers discarded theirs
    assert results[0][2] == results[1][2]
    assert _partials(cache) == [] and len(_entries(cache)) == N_CASES
    dm = ArrayDataModule(root, cache_dir=cache)
    dm.setup()
    for cid, ref in dm._refs.items():
        want = dm.load_case(ref)
        assert hashlib.sha256(want.image.tobytes() + want.label.tobytes()).hexdigest() == results[0][2][cid]


# ---- memory: memory maps, small pickles, workers ------------------------------------------------


def _synthetic_3d(tmp_path: Path, **kw: Any) -> SegDataModule:
    args = dict(size=(24, 24, 24), num_train=3, num_val=1, num_test=1, patch_size=(8, 8, 8), batch_size=2)
    return create_datamodule("synthetic_vessels_3d", cache_dir=tmp_path, **{**args, **kw})


def test_pickles_carry_folder_names_not_arrays(tmp_path):
    dm = _synthetic_3d(tmp_path / "a", samples_per_epoch=4)
    dm.setup()
    data_bytes = 5 * 24**3 * (4 + 8)  # float32 images + int64 labels
    ds = dm.train_dataloader().dataset
    [ds[i] for i in range(4)]  # open some memory maps
    assert isinstance(ds.cases[0].image, np.memmap) and ds.cases[0].label.dtype == np.uint8
    assert len(pickle.dumps(ds)) < data_bytes / 20
    assert len(pickle.dumps(dm)) < data_bytes / 20
    in_ram = _synthetic_3d(tmp_path / "b", disk_cache=False)
    in_ram.setup()
    assert len(pickle.dumps(in_ram)) > data_bytes / 2  # what the measure would see with arrays


def _batches(loader: Any) -> list[dict[str, Any]]:
    return [{k: v.clone() for k, v in b.items() if isinstance(v, torch.Tensor)} for b in loader]


def _equal(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(a, b)
    )


def test_workers_fork_and_spawn_read_the_same_patches(tmp_path):
    kw = dict(samples_per_epoch=6, augment={"flip": 0.5}, fg_oversample=0.5)
    plain = _synthetic_3d(tmp_path, **kw)
    plain.setup()
    want = _batches(plain.train_dataloader())
    forked = _synthetic_3d(tmp_path, num_workers=2, **kw)
    forked.setup()
    assert _equal(_batches(forked.train_dataloader()), want)
    ds = plain.train_dataloader().dataset
    spawned = DataLoader(
        ds, batch_size=2, sampler=EpochSampler(len(ds)), num_workers=1, multiprocessing_context="spawn"
    )
    assert _equal(_batches(spawned), want)
    val = plain.val_dataloader().dataset
    assert _equal(_batches(DataLoader(pickle.loads(pickle.dumps(val)))), _batches(DataLoader(val)))


# ---- turning it off, errors, the command ------------------------------------------------------------


def test_turned_off_the_cases_stay_in_ram_and_batches_are_identical(tmp_path, monkeypatch):
    kw = dict(samples_per_epoch=6, augment={"flip": 0.5, "rot90": 0.5}, fg_oversample=0.7)
    cached = _synthetic_3d(tmp_path / "on", **kw)
    cached.setup()
    off = _synthetic_3d(tmp_path / "off", disk_cache=False, **kw)
    off.setup()
    monkeypatch.setenv(dc.NO_DISK_CACHE_ENV, "1")
    env_off = _synthetic_3d(tmp_path / "env", **kw)
    env_off.setup()
    assert not (tmp_path / "off" / "cases").exists() and not (tmp_path / "env" / "cases").exists()
    assert len(off._cache) == len(env_off._cache) == 5 and len(_entries(tmp_path / "on")) == 5
    want = _batches(off.train_dataloader()) + _batches(off.val_dataloader())
    assert _equal(_batches(cached.train_dataloader()) + _batches(cached.val_dataloader()), want)
    assert _equal(_batches(env_off.train_dataloader()) + _batches(env_off.val_dataloader()), want)


def test_disk_cache_must_be_a_bool():
    with pytest.raises(DataArgumentError, match="disk_cache must be true or false"):
        create_datamodule("synthetic_vessels", disk_cache="no")
    with pytest.raises(DataArgumentError, match="disk_cache"):
        SegDataModule.check_kwargs({"disk_cache": 0})


class PathExtraDataModule(ArrayDataModule):
    name = "path_extra_test"

    def load_case(self, ref: CaseRef):
        case = super().load_case(ref)
        case.extras["source"] = Path(ref.info["image"])
        return case


def test_an_extra_the_cache_cannot_store_is_a_one_line_error(tmp_path):
    dm = PathExtraDataModule(_write_arrays(tmp_path / "data"), cache_dir=tmp_path / "cache")
    with pytest.raises(UserError, match=r"case 0: extras\['source'\]: a PosixPath cannot be stored"):
        dm.setup()
    assert _entries(tmp_path / "cache") == [] and _partials(tmp_path / "cache") == []


def test_segbench_cache_shows_and_clears_only_the_cases(tmp_path, monkeypatch, capsys):
    from bench.cli import main

    cache = tmp_path / "cache"
    dm = ArrayDataModule(_write_arrays(tmp_path / "data"), cache_dir=cache)
    dm.setup()
    split_files = sorted(p for p in cache.rglob("*.json") if "cases" not in p.parts)
    assert split_files  # the split file lives next to the case cache
    size = sum(p.stat().st_size for p in (cache / "cases").rglob("*") if p.is_file())
    monkeypatch.setenv("SEGBENCH_CACHE", str(cache))
    assert main(["cache"]) == 0
    out = capsys.readouterr().out
    assert f"case cache: {cache / 'cases'}" in out and f"entries: {N_CASES}" in out
    assert dc.format_bytes(size) in out
    assert main(["cache", "--clear", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert f"{N_CASES} case(s), freed {dc.format_bytes(size)}" in out
    assert not (cache / "cases").exists()
    assert sorted(p for p in cache.rglob("*.json")) == split_files
