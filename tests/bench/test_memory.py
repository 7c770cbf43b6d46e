import time

import numpy as np

from bench.run.memory import PeakMemory


def test_peak_memory_sees_a_short_lived_allocation():
    with PeakMemory(interval=0.01) as mem:
        block = np.ones(200 * 2**20 // 8)  # 200 MiB, touched
        block.sum()
        time.sleep(0.1)
        del block
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
