"""wandb tracking: offline by default, run folder with curves, table, overlays and record; no network."""

from __future__ import annotations

import socket
import threading

import pytest

from bench.cli.app import build_parser
from bench.config import sweep_from_dict
from bench.run import run_one
from bench.run.tracking import has_api_key, wandb_mode
from tests.conftest import tiny_sweep_dict


class _CountingServer:
    """A TCP listener on 127.0.0.1 that counts connection attempts (stands in for the wandb API)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def no_wandb_credentials(monkeypatch, tmp_path):
    """No API key anywhere (env, netrc) and no WANDB_MODE: the default must be offline."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NETRC", str(tmp_path / "home" / ".netrc"))
    server = _CountingServer()
    monkeypatch.setenv("WANDB_BASE_URL", server.url)
    yield server
    server.close()


def test_mode_is_offline_without_a_key_and_follows_wandb_mode(no_wandb_credentials, monkeypatch):
    assert not has_api_key() and wandb_mode() == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() == "disabled"


def test_no_wandb_flag_turns_tracking_off():
    for command in ("run", "tune"):
        args = build_parser().parse_args([command, "s.yaml", "-o", "seeds=[1]", "--no-wandb"])
        assert args.override == ["seeds=[1]", "tracking.wandb=false"]


def test_offline_run_folder_holds_curves_table_overlays_and_record(
    no_wandb_credentials, monkeypatch, tmp_path
):
    wandb_dir = tmp_path / "wandb_dir"
    monkeypatch.setenv("WANDB_DIR", str(wandb_dir))
    sweep = sweep_from_dict(tiny_sweep_dict(tracking={"wandb": True, "log_images": 1}))
    record = run_one(sweep.expand()[0], tmp_path / "results", tracking=sweep.tracking, progress=False)
    assert record.status == "done", record.traceback
    assert record.tracking_error is None

    runs = list((wandb_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    files = runs[0] / "files"
    log = next(runs[0].glob("run-*.wandb")).read_bytes()
    for key in (b"train_loss", b"val_dice", b"val_loss", b"test/dice", b"tiny"):  # curves, summary, group
        assert key in log, key
    tables = list((files / "media" / "table").glob("cases_*.table.json"))
    assert len(tables) == 1 and b"synth_0006" in tables[0].read_bytes()  # a test case id
    assert len(list((files / "media" / "images").glob("overlays_*.png"))) == 1
    assert (files / "record.json").is_file()
    assert no_wandb_credentials.connections == 0  # nothing tried the (stand-in) network
    assert (tmp_path / "results" / ".work" / record.run_id / "csv" / "metrics.csv").is_file()
