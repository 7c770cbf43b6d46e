"""A tiny ``interactive`` run through the runner: the network takes the click channels, and the
record's test cases carry the interactive protocol's keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.config import sweep_from_dict
from bench.run import run_sweep
from bench.run.build import build_datamodule, build_module
from bench.run.plan import resolve_run
from tests.conftest import tiny_sweep_dict

KEYS = ("noc85", "noc90", "dice_at_1", "dice_at_3", "dice_at_5")


def _sweep(**options):
    return sweep_from_dict(tiny_sweep_dict(schemes=[{"name": "interactive", **options}]))


def test_the_runner_builds_the_network_with_two_more_input_channels() -> None:
    (cfg,) = _sweep().expand()
    resolved = resolve_run(cfg)
    dm = build_datamodule(resolved)
    dm.setup("fit")
    module = build_module(resolved, dm)
    first = next(p for p in module.net.parameters() if p.ndim == 4)  # the first conv: (out, in, kh, kw)
    assert first.shape[1] == dm.in_channels + 2


def test_a_tiny_interactive_run_records_noc_and_dice_after_k_clicks(tmp_path: Path) -> None:
    (record,) = run_sweep(_sweep(max_clicks=6, max_iters=1), tmp_path, progress=False)
    assert record.status == "done", record.traceback
    assert record.config["scheme"] == {"name": "interactive", "kwargs": {"max_clicks": 6, "max_iters": 1}}
    assert len(record.cases) == 2
    for case in record.cases:
        for key in KEYS:
            assert isinstance(case[key], float), (key, case)
        assert 1 <= case["noc85"] <= 20 and 1 <= case["noc90"] <= 20
        assert case["noc85"] <= case["noc90"]
        for key in KEYS[2:]:
            assert 0.0 <= case[key] <= 1.0
    for key in KEYS:
        assert key in record.aggregates


def test_a_kept_interactive_model_is_refused_by_predict_in_one_line_and_its_curves_are_recorded(
    tmp_path,
) -> None:
    from bench.config import sweep_from_dict
    from bench.evaluate.predict import PredictError, find_model, load_model
    from bench.run import run_sweep
    from tests.conftest import tiny_sweep_dict

    (record,) = run_sweep(sweep_from_dict(tiny_sweep_dict(schemes=["interactive"])), tmp_path, progress=False)
    assert record.done, record.traceback
    curves = record.extra["dice_per_click"]
    assert set(curves) == {c["case_id"] for c in record.cases} and all(len(v) == 20 for v in curves.values())
    with pytest.raises(PredictError) as e:
        load_model(find_model(record.run_id, tmp_path))
    assert "click inputs" in str(e.value) and len(str(e.value).splitlines()) == 1
