"""Per-case metadata: the ``case_metadata.csv`` reader and its bad inputs, the default
``SegDataModule.case_metadata`` (also for ``nnunet_raw``), and HRF's / CHASE_DB1's metadata from
their release names on the real case ids."""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import pytest

from bench.errors import UserError
from datamodules import DATASETS
from datamodules.chase_db1 import ChaseDb1DataModule
from datamodules.hrf import HrfDataModule
from datamodules.metadata import MetadataFileError, UnknownCaseWarning, read_case_metadata

from .conftest import TableDataModule, shared_root


def _csv(root: Path, text: str | bytes) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "case_metadata.csv"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# ---- the reader ---------------------------------------------------------------------------


def test_reader_keeps_the_cases_asked_for_with_string_values(tmp_path):
    _csv(
        tmp_path,
        "\ufeffcase_id , site,age\n"
        "c0,A, 7\n"
        "\n"  # blank lines are skipped
        'c1,"B, north",\n'  # a quoted comma stays in the value; an empty cell leaves the key out
        "c2,A,40\n",
    )
    out = read_case_metadata(tmp_path, ["c0", "c1", "c9"])
    assert out == {"c0": {"site": "A", "age": "7"}, "c1": {"site": "B, north"}}
    assert all(isinstance(v, str) for values in out.values() for v in values.values())


def test_no_file_means_no_metadata(tmp_path):
    assert read_case_metadata(tmp_path, ["c0"]) == {}
    assert read_case_metadata(tmp_path / "absent", ["c0"]) == {}


@pytest.mark.parametrize(
    "text, where, what",
    [
        ("id,site\nc0,A\n", "line 1, column 1", "'case_id'"),
        ("site,case_id\nc0,A\n", "line 1, column 1", "found 'site'"),
        ("case_id,site,,age\nc0,A,x,1\n", "line 1, column 3", "empty column name"),
        ("case_id,site,site\nc0,A,B\n", "line 1, column 3", "'site' is named twice"),
        ("case_id,site\nc0,A\nc1,B\nc0,C\n", "line 4", "'c0' repeats line 2"),
        ("case_id,site,age\nc0,A,1\nc1,B\n", "line 3", "2 field(s), the header has 3"),
        ("case_id,site\nc0,A,extra\n", "line 2", "3 field(s), the header has 2"),
        ("case_id,site\n ,A\n", "line 2", "empty case_id"),
        ("", "line 1", "no header"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_file_and_the_place(tmp_path, text, where, what):
    path = _csv(tmp_path, text)
    with pytest.raises(MetadataFileError) as e:
        read_case_metadata(tmp_path, ["c0"])
    msg = str(e.value)
    assert isinstance(e.value, UserError)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: ")
    assert where in msg and what in msg, msg


def test_a_file_that_is_not_utf8_is_a_user_error(tmp_path):
    path = _csv(tmp_path, "case_id,site\nc0,Z\xfcrich\n".encode("latin-1"))
    with pytest.raises(MetadataFileError, match="not UTF-8") as e:
        read_case_metadata(tmp_path, ["c0"])
    assert str(path) in str(e.value)


def test_rows_of_cases_outside_the_dataset_are_named_in_a_warning(tmp_path):
    _csv(tmp_path, "case_id,site\nc0,A\nc1,B\ntypo_c2,C\n")
    with pytest.warns(UnknownCaseWarning, match="1 case id.*typo_c2"):
        out = read_case_metadata(tmp_path, ["c0"], dataset_cases=["c0", "c1", "c2"])
    assert out == {"c0": {"site": "A"}}
    with warnings.catch_warnings():  # every row a case of the dataset (c1 simply not asked for): silent
        warnings.simplefilter("error")
        read_case_metadata(tmp_path, ["c0"], dataset_cases=["c0", "c1", "typo_c2"])
        read_case_metadata(tmp_path, ["c0"])  # the dataset's cases unknown: no check


# ---- SegDataModule.case_metadata ------------------------------------------------------------


def test_the_default_reads_the_csv_in_the_root(tmp_path):
    _csv(tmp_path / "table", "case_id,sex\nc0,F\nc1,M\n")
    assert TableDataModule.case_metadata(["c1", "c3"], root=tmp_path / "table") == {"c1": {"sex": "M"}}


def test_an_nnunet_raw_dataset_reads_the_csv_beside_its_dataset_json(tmp_path):
    from .conftest import write_nnunet_json

    root = tmp_path / "Dataset001_X"
    write_nnunet_json(root)
    _csv(root, "case_id,scanner\ncase_001,GE\ncase_002,Siemens\n")
    cls = DATASETS.get("nnunet_raw").factory
    assert cls.case_metadata(["case_001", "case_002"], root=root) == {
        "case_001": {"scanner": "GE"},
        "case_002": {"scanner": "Siemens"},
    }


def test_hrf_condition_from_every_release_name():
    ids = [f"{n:02d}_{s}" for s in ("h", "g", "dr") for n in range(1, 16)]  # the 45 images of HRF
    meta = HrfDataModule.case_metadata([*ids, "01_x", "h", "ab_g"], root="/nonexistent")
    assert set(meta) == set(ids)  # other names get no condition
    counts = Counter(v["condition"] for v in meta.values())
    assert counts == {"healthy": 15, "glaucoma": 15, "diabetic_retinopathy": 15}
    assert meta["07_dr"] == {"condition": "diabetic_retinopathy"} and meta["15_h"]["condition"] == "healthy"


def test_hrf_adds_the_csv_keys_and_keeps_the_condition_of_the_name(tmp_path):
    _csv(tmp_path, "case_id,condition,camera\n01_g,healthy,CF-60\n")
    assert HrfDataModule.case_metadata(["01_g"], root=tmp_path) == {
        "01_g": {"condition": "glaucoma", "camera": "CF-60"}
    }


def test_hrf_metadata_on_the_real_case_ids():
    root = shared_root("HRF")
    ids = [r.case_id for r in HrfDataModule(root=root).list_cases()]
    # the shared copy holds the glaucoma subset only (SOURCE.md): 15 files glaucoma/NN_g.jpg
    files = sorted(p.stem for p in (root / "glaucoma").glob("*.jpg"))
    assert len(files) == 15 and all(f.endswith("_g") for f in files)
    assert sorted(ids) == files
    meta = HrfDataModule.case_metadata(ids, root=root)
    assert Counter(m["condition"] for m in meta.values()) == {"glaucoma": 15}
    assert set(meta) == set(ids)


def test_chase_db1_eye_and_age_group_on_the_real_case_ids():
    root = shared_root("CHASE_DB1")
    ids = [r.case_id for r in ChaseDb1DataModule(root=root).list_cases()]
    assert len(ids) == 28
    meta = ChaseDb1DataModule.case_metadata(ids, root=root)
    assert set(meta) == set(ids)
    # by hand from the file names: Image_NNL.jpg / Image_NNR.jpg for the 14 children
    left = {p.stem for p in root.glob("Image_[0-9][0-9]L.jpg")}
    right = {p.stem for p in root.glob("Image_[0-9][0-9]R.jpg")}
    assert len(left) == len(right) == 14
    assert {c for c, m in meta.items() if m["eye"] == "left"} == left
    assert {c for c, m in meta.items() if m["eye"] == "right"} == right
    assert Counter(m["age_group"] for m in meta.values()) == {"child": 28}
    assert ChaseDb1DataModule.case_metadata(["Image_1L", "image_01L"]) == {}
