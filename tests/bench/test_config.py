from pathlib import Path

import pytest
import yaml

from bench.config import DEFAULT_SWEEP, ConfigError, RunConfig, load_sweep, run_from_dict, sweep_from_dict
from tests.conftest import tiny_sweep_dict


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_default_sweep_expands_to_one_run_per_combination():
    sweep = load_sweep()
    runs = sweep.expand()
    n = len(sweep.datasets) * len(sweep.models) * len(sweep.losses) * len(sweep.seeds) * len(sweep.folds)
    assert len(runs) == n == 10
    assert len({r.run_id for r in runs}) == n
    assert {r.model.name for r in runs} == {
        "unet",
        "swin_unetr",
        "umamba_bot",
        "xlstm_unet",
        "hybridgnet_dense",
    }


def test_run_id_is_stable_and_changes_with_any_setting(tmp_path):
    path = write(tmp_path, tiny_sweep_dict())
    a = load_sweep(path).expand()[0]
    b = load_sweep(path).expand()[0]
    c = load_sweep(path, ["optim.lr=0.01"]).expand()[0]
    assert a.run_id == b.run_id and a.config_hash == b.config_hash
    assert c.config_hash != a.config_hash
    assert c.optim.lr == 0.01


def test_sweep_name_does_not_change_the_hash():
    a = sweep_from_dict(tiny_sweep_dict(name="x")).expand()[0]
    b = sweep_from_dict(tiny_sweep_dict(name="y")).expand()[0]
    assert a.config_hash == b.config_hash


def test_component_kwargs_and_round_trip():
    run = sweep_from_dict(tiny_sweep_dict()).expand()[0]
    assert run.model.kwargs == {"channels": [4, 8, 16]}
    assert run.data.patch_size == (32, 32)
    again = run_from_dict(run.to_dict())
    assert isinstance(again, RunConfig) and again.config_hash == run.config_hash


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_stepz=3", "trainer.max_stepz: unknown field (did you mean 'max_steps'?)"),
        ("trainer.max_steps=ten", "trainer.max_steps: expected int, got 'ten'"),
        ("trainer.max_steps=0", "trainer.max_steps: must be >= 1"),
        ("optim.optimizer=lion", "optim.optimizer: 'lion' is not one of adamw, adam, sgd"),
        ("optim.lr=fast", "optim.lr: expected float"),
        ("models=[]", "models: must list at least one entry"),
        ("models=[{kwargs: 1}]", "models[0]: expected a name or a mapping with 'name'"),
        ("data.patch_size=[a, b]", "data.patch_size"),
        ("colour=red", "colour: unknown field"),
        ("trainer.val_every_n_steps=0", "trainer.val_every_n_steps: must be >= 1"),
        ("trainer.val_max_cases=0", "trainer.val_max_cases: must be >= 1, -1 (all) or null"),
        ("trainer.val_max_cases=-2", "trainer.val_max_cases: must be >= 1, -1 (all) or null"),
        ("trainer.torch_threads=0", "trainer.torch_threads: must be >= 1 or null"),
        ("trainer.check_val_every_n_epoch=0", "trainer.check_val_every_n_epoch: must be >= 1 or null"),
    ],
)
def test_bad_fields_are_named(tmp_path, override, message):
    path = write(tmp_path, tiny_sweep_dict())
    with pytest.raises(ConfigError) as err:
        load_sweep(path, [override])
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="no such sweep file"):
        load_sweep(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unet\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_sweep(bad)
    top = tmp_path / "list.yaml"
    top.write_text("- unet\n")
    with pytest.raises(ConfigError, match="top level is a list; it must be a mapping"):
        load_sweep(top)


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="expected key.path=value"):
        load_sweep(DEFAULT_SWEEP, ["trainer.max_steps"])


def test_single_values_become_lists():
    sweep = sweep_from_dict(tiny_sweep_dict(seeds=3, models="unet"))
    assert sweep.seeds == (3,)
    assert [m.name for m in sweep.models] == ["unet"]


def test_validation_and_thread_fields_default_to_unset_and_accept_null(tmp_path):
    path = write(tmp_path, tiny_sweep_dict())
    t = load_sweep(path).trainer
    assert (t.check_val_every_n_epoch, t.val_max_cases, t.torch_threads) == (None, None, None)
    assert t.val_every_n_steps == 100
    t = load_sweep(path, ["trainer.check_val_every_n_epoch=null", "trainer.val_max_cases=-1"]).trainer
    assert t.check_val_every_n_epoch is None and t.val_max_cases == -1
