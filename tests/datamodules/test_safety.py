"""Data safety: held-out test sets, offline use of hand-placed archives, extraction that deletes
nothing, truncated files, and argument checks."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
import tarfile
import urllib.request
import zipfile
from pathlib import Path

import pytest

from datamodules import dataset_entry
from datamodules import download as download_mod
from datamodules.args import DataArgumentError
from datamodules.base import CaseRef
from datamodules.download import ChecksumError, ExtractClashError, download_file, safe_extract
from datamodules.readers import CaseLoadError
from datamodules.splits import SplitFileError

from .conftest import TableDataModule
from .releases import RELEASES, pack


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any network access fails the test."""

    def refuse(*args, **kwargs):
        pytest.fail(f"network access attempted: {args}")

    monkeypatch.setattr(download_mod, "_open_url", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


# ---- held-out test set -------------------------------------------------------------------


class GroupedTable(TableDataModule):
    """The file table with cases paired into groups (like both eyes of one child)."""

    name = "grouped_table"

    def list_cases(self) -> list[CaseRef]:
        refs = super().list_cases()
        for r in refs:
            r.info["group"] = f"g{int(r.case_id[1:]) // 2}"
        return refs


class OfficialTable(TableDataModule):
    """The file table with an official test split (cases 0 and 1)."""

    name = "official_table"

    def list_cases(self) -> list[CaseRef]:
        refs = super().list_cases()
        for r in refs:
            r.split = "test" if r.case_id in ("c0", "c1") else "train"
        return refs


def _split(cls, root, cache_dir, **kw):
    dm = cls(root, cache_dir=cache_dir, **kw)
    dm.setup()
    return dm.split_info()


def test_held_out_test_never_in_train_or_val_and_the_same_for_every_fold(make_file_table, cache_dir):
    root = make_file_table(n=10)
    infos = [_split(GroupedTable, root, cache_dir, fold=f, num_folds=4) for f in range(4)]
    test = infos[0]["test"]
    assert infos[0]["test_source"] == "held_out" and infos[0]["test_fraction"] == 0.2
    assert len(test) == 2 and len({f"g{int(c[1:]) // 2}" for c in test}) == 1  # one whole group
    for info in infos:
        assert info["test"] == test
        assert not set(test) & set(info["train"] + info["val"])
        assert sorted(info["train"] + info["val"] + test) == [f"c{i}" for i in range(10)]
    assert sorted(c for info in infos for c in info["val"]) == sorted(
        set(infos[0]["train"]) | set(infos[0]["val"])
    )
    # the same for another num_folds and for the same split_seed in a fresh cache; another seed differs
    assert _split(GroupedTable, root, cache_dir, num_folds=2)["test"] == test
    assert _split(GroupedTable, root, cache_dir.parent / "fresh", fold=1, num_folds=4)["test"] == test
    others = {
        tuple(_split(GroupedTable, root, cache_dir, split_seed=s, num_folds=2)["test"]) for s in range(1, 6)
    }
    assert others - {tuple(test)}
    saved = json.loads(Path(infos[0]["split_file"]).read_text())
    assert saved["test"] == test and saved["test_source"] == "held_out" and saved["test_fraction"] == 0.2


def test_official_test_split_stays_official(make_file_table, cache_dir):
    info = _split(OfficialTable, make_file_table(n=8), cache_dir, num_folds=3)
    assert info["test_source"] == "official" and info["test_fraction"] is None
    assert info["test"] == ["c0", "c1"] and not {"c0", "c1"} & set(info["train"] + info["val"])
    assert set(info) >= {"train", "val", "test", "skipped", "split_seed", "fold", "num_folds", "raters"}


@pytest.mark.parametrize(
    "content", ["{not json", '{"format": 2, "folds": "x"}', '{"format": 2, "folds": [["zz"]]}']
)
def test_corrupt_split_file_is_an_error_naming_it(make_file_table, cache_dir, content):
    root = make_file_table(n=6)
    path = Path(_split(TableDataModule, root, cache_dir, num_folds=1)["split_file"])
    path.write_text(content)
    with pytest.raises(SplitFileError, match=str(path.name)) as err:
        TableDataModule(root, cache_dir=cache_dir, num_folds=1).setup()
    assert isinstance(err.value, ValueError) and path.read_text() == content  # never deleted


# ---- download and extraction -------------------------------------------------------------


def test_present_file_without_checksum_is_trusted_recorded_and_kept(tmp_path, offline):
    dest = tmp_path / "root" / "release.zip"
    dest.parent.mkdir()
    dest.write_bytes(b"placed by hand")
    with pytest.warns(UserWarning, match="no published checksum"):
        assert download_file("https://example.invalid/release.zip", dest) == dest
    assert dest.read_bytes() == b"placed by hand"
    digest = hashlib.sha256(b"placed by hand").hexdigest()
    assert (tmp_path / "root" / "release.zip.sha256").read_text().split()[0] == digest
    download_file("https://example.invalid/release.zip", dest)  # verified against the record now
    dest.write_bytes(b"changed")
    with pytest.raises(ChecksumError, match="release.zip: present but does not match"):
        download_file("https://example.invalid/release.zip", dest)
    assert dest.read_bytes() == b"changed"  # still not deleted


def test_present_file_with_wrong_published_checksum_is_kept(tmp_path, offline):
    dest = tmp_path / "x.tar"
    dest.write_bytes(b"other version")
    with pytest.raises(ChecksumError, match="x.tar: present"):
        download_file("https://example.invalid/x.tar", dest, "md5:" + "0" * 32)
    assert dest.read_bytes() == b"other version"


@pytest.mark.parametrize("name", sorted(RELEASES))
def test_hand_placed_archives_are_used_offline(name, tmp_path, cache_dir, offline, monkeypatch):
    release, cls = RELEASES[name], dataset_entry(name).factory
    layout, root = tmp_path / "layout", tmp_path / "root"
    release.write(layout)
    archives = pack(layout, release, root)
    assert sorted(archives) == sorted(r.filename for r in cls.resources)  # the declared release files
    pinned = tuple(  # this tiny release cannot match a published digest: pin ours instead
        dataclasses.replace(
            r, checksum="sha256:" + hashlib.sha256(archives[r.filename].read_bytes()).hexdigest()
        )
        if r.checksum
        else r
        for r in cls.resources
    )
    monkeypatch.setattr(cls, "resources", pinned)
    for rel in release.by_hand:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(layout / rel, root / rel)
    before = {p: p.read_bytes() for p in archives.values()}
    dm = cls(root, cache_dir=cache_dir, num_folds=2, **release.kwargs)  # download=False: offline
    dm.setup()
    assert len(dm._refs) >= 3 and not dm.skipped
    assert {p: p.read_bytes() for p in archives.values()} == before  # archives kept as they were
    for res in cls.resources:
        if res.checksum is None:
            assert (root / f"{res.filename}.sha256").is_file()  # trusted on first use, recorded
    case = dm.case(dm.splits["train"][0])
    assert case.label.shape == case.image.shape[1:]
    cls(root, cache_dir=cache_dir, num_folds=2, **release.kwargs).setup()  # a second run is a no-op


def test_manual_release_files_are_never_downloaded(tmp_path, cache_dir, offline):
    drive = dataset_entry("drive").factory
    with pytest.raises(FileNotFoundError, match=r"training.zip, test.zip cannot be downloaded automatically"):
        drive(tmp_path / "DRIVE", download=True, cache_dir=cache_dir).setup()
    with pytest.raises(FileNotFoundError, match="Put the release files"):
        drive(tmp_path / "DRIVE", cache_dir=cache_dir).setup()


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tf:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_extraction_never_replaces_a_user_folder_with_a_file(tmp_path):
    dest = tmp_path / "root"
    (dest / "data").mkdir(parents=True)
    (dest / "data" / "mine.txt").write_text("user notes")
    archive = _tar(tmp_path / "r.tar", {"data": b"a plain file", "other.txt": b"x"})
    with pytest.raises(ExtractClashError, match=r"r.tar: member 'data' \(file\) would replace .*root/data"):
        safe_extract(archive, dest)
    assert (dest / "data" / "mine.txt").read_text() == "user notes"
    assert not (dest / "other.txt").exists()  # nothing moved in: all or nothing
    assert sorted(p.name for p in dest.iterdir()) == ["data"]


def test_extraction_overwrites_only_what_it_wrote(tmp_path):
    dest = tmp_path / "root"
    dest.mkdir()
    (dest / "notes.txt").write_text("user file")
    same = b"identical bytes"
    (dest / "same.txt").write_bytes(same)
    archive = _tar(tmp_path / "r.tar", {"a/x.txt": b"v1", "same.txt": same})
    with tarfile.open(archive, "a") as tf:
        folder = tarfile.TarInfo("empty")
        folder.type = tarfile.DIRTYPE
        tf.addfile(folder)
    safe_extract(archive, dest)
    assert (dest / "a/x.txt").read_bytes() == b"v1" and (dest / "same.txt").read_bytes() == same
    assert (dest / "empty").is_dir()  # empty folders of the archive are made too
    manifest = json.loads((dest / ".segbench-extract-r.tar.json").read_text())
    assert manifest["files"] == ["a/x.txt"]  # the identical user file is not claimed
    _tar(tmp_path / "r.tar", {"a/x.txt": b"v2"})  # a new version of the same archive
    safe_extract(tmp_path / "r.tar", dest)
    assert (dest / "a/x.txt").read_bytes() == b"v2"  # written by the earlier extraction: replaced
    clash = _tar(tmp_path / "other.tar", {"a/x.txt": b"v3", "notes.txt": b"theirs"})
    with pytest.raises(ExtractClashError, match="other.tar: member 'a/x.txt'"):
        safe_extract(clash, dest)  # another archive did not write a/x.txt
    assert (dest / "notes.txt").read_text() == "user file" and (dest / "a/x.txt").read_bytes() == b"v2"
    zpath = tmp_path / "u.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("notes.txt", "theirs")
    with pytest.raises(ExtractClashError, match="notes.txt"):
        safe_extract(zpath, dest)
    assert (dest / "notes.txt").read_text() == "user file"


def test_progress_bars_on_download_and_extraction(tmp_path, monkeypatch):
    bars = []
    real = download_mod.tqdm

    def recording(*args, **kwargs):
        bars.append(kwargs.get("desc"))
        return real(*args, **kwargs)

    monkeypatch.setattr(download_mod, "tqdm", recording)
    src = _tar(tmp_path / "r.tar", {"a.txt": b"hello"})
    res = download_mod.Resource(
        src.as_uri(), "r.tar", "sha256:" + hashlib.sha256(src.read_bytes()).hexdigest()
    )
    download_mod.fetch_resources([res], tmp_path / "root")
    assert bars == ["download r.tar", "extract r.tar"]


# ---- corrupt and truncated files ---------------------------------------------------------

_TRUNCATED = {  # format: (dataset, file of the layout, case id)
    "tiff": ("drive", "training/images/21_training.tif", "21_training"),
    "gif": ("drive", "training/1st_manual/22_manual1.gif", "22_training"),
    "png": ("chase_db1", "Image_02L_2ndHO.png", "Image_02L"),
    "ppm.gz": ("stare", "labels-ah/im0003.ah.ppm.gz", "im0003"),
    "nifti": ("msd_spleen", "Task09_Spleen/imagesTr/case_1.nii.gz", "case_1"),
}


@pytest.mark.parametrize("fmt", sorted(_TRUNCATED))
def test_truncated_files_name_the_file_and_follow_on_bad_case(fmt, tmp_path, cache_dir):
    name, rel, cid = _TRUNCATED[fmt]
    release, cls = RELEASES[name], dataset_entry(name).factory
    release.write(tmp_path)
    data = (tmp_path / rel).read_bytes()
    (tmp_path / rel).write_bytes(data[: len(data) // 2])
    assert cls.on_bad_case_default == "skip"
    with pytest.warns(UserWarning, match=f"skipped 1 bad case.*{cid}"):
        info = _split(cls, tmp_path, cache_dir, num_folds=2)
    assert list(info["skipped"]) == [cid] and Path(rel).name in info["skipped"][cid]
    assert cid in info["train"] + info["val"] + info["test"]  # listed where it was, marked skipped
    with pytest.raises(CaseLoadError, match=Path(rel).name):
        cls(tmp_path, cache_dir=cache_dir, num_folds=2, on_bad_case="raise").setup()


# ---- argument checks ---------------------------------------------------------------------

_BAD_ARGS = [
    ({"samples_per_epoch": 0}, "samples_per_epoch"),
    ({"patch_size": (16, 16, 16)}, "patch_size needs 2 entries"),
    ({"patch_size": (16, 0)}, "patch_size entries"),
    ({"fg_oversample": 1.5}, "fg_oversample"),
    ({"fg_oversample": -0.1}, "fg_oversample"),
    ({"num_folds": 0}, "num_folds"),
    ({"fold": 5, "num_folds": 5}, "fold must be an integer in 0..4"),
    ({"fold": -1}, "fold"),
    ({"batch_size": 0}, "batch_size"),
    ({"num_workers": -1}, "num_workers"),
    ({"annotator": "zz"}, "annotator 'zz' is unknown"),
    ({"augment": {"flop": 0.5}}, r"augment has unknown key\(s\) \['flop'\]"),
    ({"augment": {"flip": 1.5}}, "augment probability of 'flip'"),
    ({"on_bad_case": "ignore"}, "on_bad_case"),
    ({"seed": "x"}, "seed must be an integer"),
]


@pytest.mark.parametrize(("kwargs", "message"), _BAD_ARGS)
def test_bad_arguments_are_one_line_errors_naming_them(kwargs, message, tmp_path):
    with pytest.raises(DataArgumentError, match=message) as err:
        TableDataModule(tmp_path / "absent", **kwargs)
    assert isinstance(err.value, ValueError) and "\n" not in str(err.value)
    with pytest.raises(DataArgumentError, match=message):
        TableDataModule.check_kwargs({"root": str(tmp_path / "absent"), **kwargs})
    assert not (tmp_path / "absent").exists()


def test_check_kwargs_names_unknown_arguments_and_accepts_dataset_ones(tmp_path):
    vevio = dataset_entry("vevio").factory
    vevio.check_kwargs({"root": "/nowhere", "subset": "mosaics", "seed": 3, "multi_rater": True})
    with pytest.raises(DataArgumentError, match="subset must be one of"):
        vevio.check_kwargs({"subset": "all"})
    with pytest.raises(
        DataArgumentError, match=r"vevio: unknown argument 'batchsize'; accepted: root, .*subset"
    ):
        vevio.check_kwargs({"batchsize": 2})
    synth = dataset_entry("synthetic_vessels_3d").factory
    synth.check_kwargs({"size": (16, 16, 16), "patch_size": (8, 8, 8)})
    with pytest.raises(DataArgumentError, match="size needs 3 entries"):
        synth.check_kwargs({"size": (16, 16)})
    with pytest.raises(DataArgumentError, match="organs"):
        dataset_entry("cxr_landmarks").factory.check_kwargs({"organs": ["XX"]})
    with pytest.raises(DataArgumentError, match="intensity_window"):
        dataset_entry("msd_spleen").factory.check_kwargs({"intensity_window": (5, 1)})
