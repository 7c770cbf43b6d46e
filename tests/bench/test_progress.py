"""One progress display per sweep: one bar at a time on a terminal, rate-limited plain lines in a log."""

from __future__ import annotations

import io

from bench.config import sweep_from_dict
from bench.run import progress as progress_module
from bench.run import run_sweep
from bench.run.progress import Progress
from tests.conftest import tiny_sweep_dict


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_come_at_most_every_interval_and_never_with_carriage_returns():
    stream, clock = io.StringIO(), _Clock()
    p = Progress(2, stream=stream, tty=False, interval=5.0, clock=clock)
    p.next_run()
    p.run_started("run-a")
    p.start_phase("train", 100)
    for step in range(1, 101):  # 100 steps over 12.5 s
        clock.now = step * 0.125
        p.update(step, {"train_loss": 1.0 / step})
    p.run_ended("done")
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert lines[0] == "[1/2] run-a: started"
    assert lines[1].startswith("[1/2] run-a: train 40/100 steps, train_loss ")  # at 5 s
    assert lines[2].startswith("[1/2] run-a: train 80/100 steps")  # at 10 s
    assert lines[3].startswith("[1/2] run-a: done in 12.5 s (train_loss ")
    assert len(lines) == 4


def test_a_failed_run_ends_with_its_error():
    stream = io.StringIO()
    p = Progress(1, stream=stream, tty=False, clock=_Clock())
    p.run_started("run-b")
    p.run_ended("failed", "ValueError: bad\nTraceback ...")
    assert stream.getvalue().splitlines()[-1] == "[1/1] run-b: failed in 0.0 s: ValueError: bad"


def test_a_sweep_on_a_terminal_shows_one_bar_at_a_time(tmp_path, monkeypatch, capsys):
    class CountingBar(progress_module.tqdm):
        live = most = made = 0

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            type(self).live += 1
            type(self).made += 1
            type(self).most = max(type(self).most, type(self).live)

        def close(self):
            if not getattr(self, "_counted_closed", False):
                self._counted_closed = True
                type(self).live -= 1
            super().close()

    monkeypatch.setattr(progress_module, "tqdm", CountingBar)
    monkeypatch.setattr(progress_module, "_isatty", lambda stream: True)
    records = run_sweep(sweep_from_dict(tiny_sweep_dict(seeds=[0, 1])), tmp_path, progress=True)
    assert [r.status for r in records] == ["done", "done"]
    assert CountingBar.made >= 6  # train, validate, test ... of each run
    assert CountingBar.most == 1 and CountingBar.live == 0  # never two bars; none left open
    err = capsys.readouterr().err
    for i, record in enumerate(records, start=1):
        assert f"[{i}/2] {record.run_id}: done in " in err
