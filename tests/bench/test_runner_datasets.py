"""The runner on other losses and on real data: each is one line of the sweep file."""

import math

import yaml

from bench.config import load_sweep, sweep_from_dict
from bench.run import build_datamodule, build_module, run_sweep
from models import model_entry
from tests.conftest import tiny_sweep_dict
from tests.datamodules.conftest import shared_root


def test_dice_versus_dice_plus_cldice_through_the_runner(tmp_path):
    sweep = sweep_from_dict(tiny_sweep_dict(losses=["dice", "dice+cldice"]))
    records = run_sweep(sweep, tmp_path, progress=False)
    assert [r.status for r in records] == ["done", "done"], [r.error for r in records]
    assert [r.loss_name for r in records] == ["dice", "dice+cldice"]
    for r in records:
        assert all(0.0 <= c["cldice"] <= 1.0 or math.isnan(c["cldice"]) for c in r.cases)
    # same seed, same data, different loss: the trained networks differ
    assert records[0].cases[0]["dice"] != records[1].cases[0]["dice"]


def test_default_sweep_has_one_model_per_family():
    families = {model_entry(m.name).meta["family"] for m in load_sweep().models}
    assert families == {"cnn", "transformer", "mamba", "xlstm", "gnn"}


def test_default_sweep_points_at_drive_with_one_line(tmp_path):
    root = shared_root("DRIVE")
    line = {"name": "drive", "root": str(root), "limit_cases": 2, "scale": 0.5}
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text(yaml.safe_dump(tiny_sweep_dict(datasets=[line])))
    sweep = load_sweep(sweep_file, ["data.patch_size=[64, 64]"])
    (record,) = run_sweep(sweep, tmp_path / "results", progress=False)
    assert record.status == "done", record.traceback
    assert len(record.cases) == 2
    assert all(c["case_id"] in record.split["test"] for c in record.cases)
    assert {"dice", "cldice", "betti1_err", "ece"} <= set(record.cases[0])


def test_hybridgnet_trains_with_its_landmark_loss_on_cxr_landmarks(tmp_path):
    root = shared_root("CXR_Landmarks")
    dataset = {"name": "cxr_landmarks", "root": str(root), "limit_cases": 2, "scale": 0.125, "augment": {}}
    model = {"name": "hybridgnet", "contour_sizes": [44, 50, 26, 23, 23], "contour_classes": [1, 2, 3, 4, 5]}
    sweep = sweep_from_dict(
        tiny_sweep_dict(
            datasets=[dataset],
            models=[model],
            data={"batch_size": 1, "patch_size": [128, 128], "samples_per_epoch": 2},
        )
    )
    run = sweep.expand()[0]
    dm = build_datamodule(run)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["landmarks"].shape == (1, 166, 2)
    net = build_module(run, dm).net
    assert float(net.aux_loss(net(batch["image"]), batch)) > 0  # the landmark term is live
    (record,) = run_sweep(sweep, tmp_path, progress=False)
    assert record.status == "done", record.traceback
    assert {f"dice_{c}" for c in range(1, 6)} <= set(record.cases[0])
