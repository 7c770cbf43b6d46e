"""SLURM executor: option parsing, the sbatch script submitit writes, the array task, and a real cluster.

The tests marked ``real SLURM`` need a running cluster (``source .ci/slurm.sh`` starts a one-node
one and sets ``SEGBENCH_SLURM=1``). They skip when ``SEGBENCH_SLURM`` is unset and FAIL when it is
set but ``sbatch`` is missing or the cluster does not answer.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from submitit.slurm.slurm import _make_sbatch_string

from bench.cluster import options, slurm
from bench.cluster.queue import ACTIVE_STATES, QueueEntry, claim_holder
from bench.config import TrainerConfig, sweep_from_dict
from bench.records import load_records
from bench.records.store import claim, read_record, record_path
from tests.conftest import REPO, tiny_sweep_dict


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    options.add_arguments(p)
    return p.parse_args(list(argv))


# ---- options (no cluster needed) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("90", 90),
        ("1:30", 2),
        ("2:00:00", 120),
        ("1-0", 1440),
        ("1-2:30", 1590),
        ("0-0:0:30", 1),
        ("3-04:05:06", 3 * 1440 + 4 * 60 + 6),
    ],
)
def test_time_limits_in_every_slurm_format_become_whole_minutes(text, minutes):
    assert options.parse_time(text) == minutes  # hand-computed; seconds round up


@pytest.mark.parametrize("text", [None, "abc", "0", "1:2:3:4", "-5", "1h"])
def test_bad_or_missing_time_limits_are_one_line_errors(text):
    with pytest.raises(slurm.SlurmError, match="--time"):
        options.parse_time(text)


def test_slurm_args_pass_through_and_segbench_owned_options_are_refused():
    assert options.parse_slurm_args(["account=lab", "qos_level=high", "exclusive", "--comment=a=b"]) == {
        "account": "lab",
        "qos-level": "high",
        "exclusive": True,
        "comment": "a=b",
    }
    with pytest.raises(slurm.SlurmError, match="use --time"):
        options.parse_slurm_args(["time=10"])
    with pytest.raises(slurm.SlurmError, match="use --partition"):
        options.parse_slurm_args(["partition=gpu"])
    with pytest.raises(slurm.SlurmError, match="KEY=VALUE"):
        options.parse_slurm_args(["=x"])


def _sbatch(params: dict[str, Any], tmp_path: Path, runs: int = 3) -> str:
    """The sbatch script submitit writes for an array of ``runs`` tasks with these parameters."""
    return _make_sbatch_string(
        command="python -m submitit.core._submit X", folder=tmp_path, map_count=runs, **params
    )


def test_one_device_run_is_one_task_with_the_requested_resources(tmp_path):
    args = _args(
        "--time",
        "1:30:00",
        "--partition",
        "short",
        "--cpus-per-run",
        "4",
        "--mem",
        "16G",
        "--max-parallel",
        "2",
        "--slurm-arg",
        "account=lab",
    )
    params = options.slurm_parameters(args, TrainerConfig(), "vessels")
    text = _sbatch(params, tmp_path)
    for line in (
        "--time=90",
        "--partition=short",
        "--cpus-per-task=4",
        "--mem=16G",
        "--nodes=1",
        "--ntasks-per-node=1",
        "--array=0-2%2",
        "--account=lab",
        "--job-name=segbench-vessels",
        "--signal=USR2@90",
    ):
        assert f"#SBATCH {line}\n" in text, line
    assert "gpus-per-node" not in text  # a CPU trainer asks for no GPU
    assert f"export PYTHONPATH={REPO}" in text  # the task imports this checkout's `bench`


def test_ddp_run_gets_one_slurm_task_per_device_on_every_node(tmp_path):
    trainer = TrainerConfig(accelerator="gpu", devices=4, strategy="ddp", num_nodes=2)
    params = options.slurm_parameters(_args("--time", "60", "--cpus-per-run", "32"), trainer, "ddp")
    text = _sbatch(params, tmp_path)
    for line in ("--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--cpus-per-task=8"):
        assert f"#SBATCH {line}\n" in text, line
    with pytest.raises(slurm.SlurmError, match="--gpus-per-run 2 does not match trainer.devices 4"):
        options.slurm_parameters(_args("--time", "60", "--gpus-per-run", "2"), trainer, "ddp")
    auto = TrainerConfig(accelerator="gpu", devices="auto")
    params = options.slurm_parameters(_args("--time", "5", "--gpus-per-run", "2"), auto, "x")
    assert params["ntasks_per_node"] == 2


def test_bad_resource_options_are_refused(tmp_path):
    for argv, match in (
        (("--mem", "lots"), "--mem"),
        (("--cpus-per-run", "0"), "--cpus-per-run"),
        (("--max-parallel", "0"), "--max-parallel"),
    ):
        with pytest.raises(slurm.SlurmError, match=match):
            options.slurm_parameters(_args("--time", "5", *argv), TrainerConfig(), "x")


def test_slurm_options_with_the_local_executor_are_refused_not_ignored():
    options.check_local_options(_args())  # nothing given: fine
    options.check_local_options(_args("--executor", "local"))
    with pytest.raises(slurm.SlurmError, match="--partition, --wait: only with --executor slurm"):
        options.check_local_options(_args("--partition", "gpu", "--wait"))


def test_force_and_missing_time_fail_before_anything_is_submitted(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(tiny_sweep_dict()))
    args = _args("--executor", "slurm")
    args.force, args.quiet, args.no_leaderboard = True, True, True
    with pytest.raises(slurm.SlurmError, match="--force"):
        slurm.submit_sweep(path, [], tmp_path / "r", args)
    args.force = False
    with pytest.raises(slurm.SlurmError, match="--time is required"):
        slurm.submit_sweep(path, [], tmp_path / "r", args)
    assert not (tmp_path / "r" / ".slurm").exists()


def test_resubmission_skips_done_running_and_queued_runs_only(tmp_path, monkeypatch):
    runs = sweep_from_dict(tiny_sweep_dict(name="skip", seeds=[0, 1, 2, 3, 4])).expand()
    ids = [cfg.run_id for cfg in runs]
    for run_id, state in ((ids[0], "done"), (ids[1], "failed")):
        (tmp_path / f"{run_id}.json").write_text(json.dumps({"schema": 2, "run_id": run_id, "status": state}))
    held = claim(tmp_path, ids[2])  # a live worker executes it now
    ledger = {
        "job_id": "9",
        "submitted_at": "2026-01-01T00:00:00+00:00",
        "tasks": {ids[3]: "9_3", ids[4]: "9_4"},
    }
    slurm.ledger_path(tmp_path).parent.mkdir(parents=True)
    slurm.ledger_path(tmp_path).write_text(json.dumps(ledger) + "\n")
    queue = {
        "9_3": QueueEntry("9_3", "PENDING", "", "Priority"),
        "9_4": QueueEntry("9_4", "CANCELLED", "", ""),
    }
    monkeypatch.setattr(slurm, "queue_entries", lambda: queue)  # what squeue would list
    todo, skipped = slurm._to_submit(runs, tmp_path)
    assert [cfg.run_id for cfg in todo] == [ids[1], ids[4]]  # the failed one, the cancelled one
    assert skipped == {"done": 1, "running": 1, "queued": 1}
    held.release()
    assert [cfg.run_id for cfg in slurm._to_submit(runs, tmp_path)[0]] == [ids[1], ids[2], ids[4]]


# ---- the array task (no cluster needed) -------------------------------------------------------


def test_the_array_task_pickles_checkpoints_as_the_same_call_and_runs_once(tmp_path):
    cfg = sweep_from_dict(tiny_sweep_dict(name="task")).expand()[0]
    task = slurm.RunTask()
    call = (cfg.to_dict(), None, str(tmp_path), cfg.run_id)
    delayed = task.checkpoint(*call)  # what submitit pickles and requeues on USR2
    assert isinstance(delayed.function, slurm.RunTask) and delayed.args == call and delayed.kwargs == {}
    assert isinstance(pickle.loads(pickle.dumps(task)), slurm.RunTask)

    assert task(*call) == f"{cfg.run_id}: done"
    record = read_record(record_path(tmp_path, cfg.run_id))
    assert record["status"] == "done" and record["attempt"] == 1
    assert task(*call) == f"{cfg.run_id}: done already"  # a duplicate task does not run it again
    assert len((tmp_path / ".work" / cfg.run_id / "starts.log").read_text().splitlines()) == 1
    with pytest.raises(RuntimeError, match="has id"):
        task(cfg.to_dict(), None, str(tmp_path), "some_other_run")


def test_the_sbatch_entry_point_refuses_a_run_the_sweep_does_not_have(tmp_path, capsys, monkeypatch):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(tiny_sweep_dict(seeds=[0, 1])))
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    for argv, message in (
        (["--index", "2"], "--index 2: " + str(path) + " has 2 run(s) (0..1)"),
        (["--run-id", "nope"], "--run-id nope: not a run of"),
        ([], "--index None"),
    ):
        assert slurm._main([str(path), "--results", str(tmp_path / "r"), *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("python -m bench.cluster.slurm: error: ")
        assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


# ---- a real SLURM cluster -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> None:
    """Skip without ``SEGBENCH_SLURM``; with it, fail unless sbatch exists and the node answers."""
    if not os.environ.get("SEGBENCH_SLURM"):
        pytest.skip("SEGBENCH_SLURM is not set (source .ci/slurm.sh starts a one-node cluster)")
    for tool in ("sbatch", "squeue", "scancel", "sinfo"):
        assert shutil.which(tool), f"SEGBENCH_SLURM is set but {tool} is not on PATH"
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip(), f"SLURM cluster does not answer: {out.stderr.strip()}"


def _segbench(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the real CLI (``segbench ARGV``, in this process); returns what it printed."""
    from bench.cli import main

    capsys.readouterr()
    rc = main(list(argv))
    out = capsys.readouterr()
    assert rc == 0, out.out + out.err
    return out.out + out.err


def _job_id(output: str) -> str:
    m = re.search(r"submitted SLURM job(?: array)? (\d+)", output)
    assert m, output
    return m.group(1)


def _active(job: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T"], capture_output=True, text=True, timeout=60)
    states = dict(line.split("|") for line in out.stdout.split())
    return any(states.get(j) in ACTIVE_STATES for j in states if j == job or j.startswith(f"{job}_"))


def _until(check, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.2)


def _write(path: Path, sweep: dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump(sweep))
    return str(path)


SLURM_RUN = ("--executor", "slurm", "--time", "10", "--cpus-per-run", "1", "--quiet")


@pytest.mark.slow
def test_real_slurm_four_runs_are_one_job_array_of_four_tasks_and_resubmission_submits_nothing(
    cluster, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(slurm, "POLL_SECONDS", 0.5)
    sweep = tiny_sweep_dict(
        name="slurm4", seeds=[0, 1], losses=["dice_ce", "dice"], models=[{"name": "unet", "channels": [4, 8]}]
    )
    sweep["trainer"]["max_steps"] = 10
    path, results = _write(tmp_path / "sweep.yaml", sweep), tmp_path / "results"
    board = tmp_path / "leaderboard.md"
    out = _segbench(
        capsys, "run", path, "--results", str(results), "--leaderboard", str(board), *SLURM_RUN, "--wait"
    )
    array = _job_id(out)
    assert "submitted SLURM job array" in out and "4 run(s) done, 0 failed" in out
    records = load_records(results)[0]
    assert len(records) == 4 and all(r["status"] == "done" and r["attempt"] == 1 for r in records)
    assert {r["worker"]["slurm_array_job_id"] for r in records} == {array}
    assert sorted(r["worker"]["slurm_array_task_id"] for r in records) == ["0", "1", "2", "3"]
    assert board.exists()

    again = _segbench(capsys, "run", path, "--results", str(results), "--no-leaderboard", *SLURM_RUN)
    assert "nothing to submit: 4 of 4 run(s) done" in again
    assert len(slurm.ledger_path(results).read_text().splitlines()) == 1  # one submission only
    status = _segbench(capsys, "status", path, "--results", str(results))
    assert "4 run(s): 4 done," in status and f"job {array}_3" in status


def _long_run(tmp_path: Path) -> tuple[str, Path, str]:
    sweep = tiny_sweep_dict(name="slurmlong", models=[{"name": "unet", "channels": [4, 8]}])
    sweep["trainer"].update(max_steps=400, checkpoint_every_n_steps=5, log_every_n_steps=50)
    path = _write(tmp_path / "long.yaml", sweep)
    return path, tmp_path / "results", sweep_from_dict(sweep).expand()[0].run_id


@pytest.mark.slow
def test_real_slurm_cancelled_task_is_resubmitted_and_resumes_from_its_checkpoint(
    cluster, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(slurm, "POLL_SECONDS", 0.5)
    path, results, run_id = _long_run(tmp_path)
    first = _job_id(_segbench(capsys, "run", path, "--results", str(results), *SLURM_RUN))
    ckpt = results / ".work" / run_id / "checkpoints" / "last.ckpt"
    _until(ckpt.exists, 180, "the first checkpoint")
    status = _segbench(capsys, "status", path, "--results", str(results))
    assert re.search(rf"{run_id}\s+running\s+job {first} on localhost", status), status
    assert claim_holder(results, run_id)["slurm_job_id"] == first

    subprocess.run(["scancel", first], check=True, timeout=60)
    _until(lambda: not _active(first), 120, f"job {first} to end")
    _until(lambda: claim_holder(results, run_id) is None, 30, "the claim to be released")
    assert (read_record(record_path(results, run_id)) or {}).get("status") != "done"

    out = _segbench(capsys, "run", path, "--results", str(results), "--no-leaderboard", *SLURM_RUN, "--wait")
    second = _job_id(out)
    assert second != first
    record = read_record(record_path(results, run_id))
    assert record["status"] == "done" and record["steps"] == 400
    assert record["attempt"] == 2 and 0 < record["resumed_from_step"] < 400
    assert record["worker"]["slurm_job_id"] == second


@pytest.mark.slow
def test_real_slurm_usr2_checkpoints_requeues_the_same_job_and_resumes(
    cluster, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(slurm, "POLL_SECONDS", 0.5)
    """SLURM sends USR2 before the time limit (or on preemption): submitit requeues the same call."""
    path, results, run_id = _long_run(tmp_path)
    job = _job_id(_segbench(capsys, "run", path, "--results", str(results), *SLURM_RUN))
    _until((results / ".work" / run_id / "checkpoints" / "last.ckpt").exists, 180, "the first checkpoint")
    subprocess.run(["scancel", "--signal=USR2", job], check=True, timeout=60)
    _until(lambda: not _active(job), 240, f"job {job} to end (requeued once: pending, running, done)")
    record = read_record(record_path(results, run_id))
    assert record["attempt"] == 2 and 0 < record["resumed_from_step"] < 400 and record["steps"] == 400
    assert record["worker"]["slurm_job_id"] == job  # the same job, requeued (not a new submission)
    assert len(slurm.ledger_path(results).read_text().splitlines()) == 1
    restarts = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
    assert "Restarts=1" in restarts


@pytest.mark.slow
def test_real_slurm_ddp_run_is_one_array_task_with_two_ranks(cluster, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(slurm, "POLL_SECONDS", 0.5)
    """Two CPU ranks (gloo) in one SLURM job: one SLURM task per device, wired by Lightning."""
    sweep = tiny_sweep_dict(name="slurmddp", models=[{"name": "unet", "channels": [4, 8]}])
    sweep["trainer"].update(accelerator="cpu", devices=2, strategy="ddp", max_steps=4)
    sweep["datasets"][0]["num_test"] = 3
    path, results = _write(tmp_path / "ddp.yaml", sweep), tmp_path / "results"
    out = _segbench(capsys, "run", path, "--results", str(results), "--no-leaderboard", *SLURM_RUN, "--wait")
    records = load_records(results)[0]
    assert len(records) == 1, out
    rec = records[0]
    assert rec["status"] == "done", rec.get("error")
    assert rec["world_size"] == 2 and rec["steps"] == 4 and len(rec["cases"]) == 3
    assert rec["worker"]["slurm_job_id"] == _job_id(out)
    assert json.loads(json.dumps(rec["aggregates"]))["dice"]["n"] == 3


def _documented_sbatch(**local: str) -> str:
    """The sbatch script of docs/cluster.md with the ``#SBATCH`` options in ``local`` replaced
    (an empty value drops the option)."""
    text = (REPO / "docs" / "cluster.md").read_text()
    script = text.split("<!-- sbatch-example -->", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    lines = []
    for line in script.splitlines():
        m = re.fullmatch(r"#SBATCH --([\w-]+)=(.*)", line)
        if m and m[1] in local:
            if not local[m[1]]:
                continue
            line = f"#SBATCH --{m[1]}={local[m[1]]}"
        lines.append(line)
    return "\n".join(lines) + "\n"


@pytest.mark.slow
def test_real_slurm_the_documented_sbatch_script_runs_a_ddp_run(cluster, tmp_path):
    sweep = tiny_sweep_dict(name="slurmdoc", models=[{"name": "unet", "channels": [4, 8]}])
    sweep["trainer"].update(accelerator="cpu", devices=2, strategy="ddp", max_steps=4)
    path, results = _write(tmp_path / "ddp.yaml", sweep), tmp_path / "results"
    script = _documented_sbatch(
        array="0-0",
        nodes="1",
        **{
            "ntasks-per-node": "2",
            "cpus-per-task": "1",
            "gpus-per-node": "",
            "mem": "",
            "time": "10",
            "output": f"{tmp_path}/%A_%a.out",
        },
    )
    assert "srun python -m bench.cluster.slurm ddp.yaml --results results" in script
    script = script.replace("ddp.yaml --results results", f"{path} --results {results}")
    script = script.replace("source .venv/bin/activate", f"source {Path(sys.prefix) / 'bin' / 'activate'}")
    (tmp_path / "job.sh").write_text(script)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    sub = subprocess.run(
        ["sbatch", "--parsable", str(tmp_path / "job.sh")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    job = sub.stdout.strip().split(";")[0]
    _until(lambda: not _active(job), 240, f"job {job} to end")
    log = "".join(p.read_text() for p in tmp_path.glob("*.out"))
    records = load_records(results)[0]
    assert len(records) == 1 and records[0]["status"] == "done", log[-3000:]
    rec = records[0]
    assert rec["world_size"] == 2 and rec["steps"] == 4
    assert (rec["worker"]["slurm_array_job_id"], rec["worker"]["slurm_array_task_id"]) == (job, "0")
