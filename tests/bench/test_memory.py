import mmap
import time

import numpy as np

from bench.run.memory import PeakMemory


def _fresh_pages(mib: int) -> mmap.mmap:
    """``mib`` MiB of new resident pages: an anonymous map of its own, every page written (an
    allocator could serve a numpy array from pages the process holds already)."""
    block = mmap.mmap(-1, mib * 2**20)
    np.frombuffer(block, dtype=np.uint8)[:] = 1
    return block


def test_peak_memory_sees_a_short_lived_allocation():
    with PeakMemory(interval=0.01) as mem:
        block = _fresh_pages(200)
        deadline = time.monotonic() + 10.0  # on a loaded machine the sampler may run late
        while mem.peak_rss - mem.baseline_rss < 150 * 2**20 and time.monotonic() < deadline:
            time.sleep(0.01)
        block.close()  # gone before the run ends: only the sampler can have seen it
    result = mem.result()
    assert result["cpu_rss_increase_mb"] > 150
    assert result["cpu_peak_rss_mb"] >= result["cpu_rss_increase_mb"]


def test_a_later_small_run_is_not_charged_with_an_earlier_peak():
    with PeakMemory(interval=0.01):
        big = np.ones(200 * 2**20 // 8)
        big.sum()
        del big
    with PeakMemory(interval=0.01) as small:
        np.ones(1000).sum()
    assert small.result()["cpu_rss_increase_mb"] < 50
