"""Peak memory of one run, measured while it runs (not the process-lifetime high-water mark).

``resource.getrusage(...).ru_maxrss`` only ever grows, so in a sweep it would charge every run
with the largest run before it. :class:`PeakMemory` samples the process's resident set size
(psutil) on a background thread during the run, and on CUDA reads
``torch.cuda.max_memory_allocated`` after resetting it at the start.
"""

from __future__ import annotations

import threading
from typing import Any

import psutil
import torch


class PeakMemory:
    """Context manager: ``with PeakMemory(cuda=True) as mem: ...; mem.result()``.

    Args:
        interval: seconds between RSS samples.
        cuda: also track CUDA allocations (when a GPU is present).
    """

    def __init__(self, interval: float = 0.05, cuda: bool = False) -> None:
        self.interval = interval
        self.cuda = cuda and torch.cuda.is_available()
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.baseline_rss = 0
        self.peak_rss = 0

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, self._process.memory_info().rss)
            self._stop.wait(self.interval)

    def start(self) -> PeakMemory:
        """Reset the peaks and start sampling."""
        self._stop.clear()
        self.baseline_rss = self.peak_rss = self._process.memory_info().rss
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._sample, daemon=True, name="segbench-peak-memory")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling (safe to call twice)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            self.peak_rss = max(self.peak_rss, self._process.memory_info().rss)

    def __enter__(self) -> PeakMemory:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def result(self) -> dict[str, float]:
        """``cpu_peak_rss_mb`` (peak RSS during the run), ``cpu_rss_increase_mb`` (peak minus
        the RSS at the start) and, on CUDA, ``gpu_peak_mb``."""
        out: dict[str, Any] = {
            "cpu_peak_rss_mb": self.peak_rss / 2**20,
            "cpu_rss_increase_mb": (self.peak_rss - self.baseline_rss) / 2**20,
        }
        if self.cuda:
            out["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        return out
