"""The CPU kernels' thread count on a busy machine (csrc/cpu/threads.h): no more threads than the
cores other processes leave idle, because a thread that shares a core finishes last and the
kernel's end waits for it."""
import os
import subprocess
import sys
import time

import pytest
import torch

from irnet_fast import _ext

if _ext.HAS_CPP:
    from irnet_fast import _C as ext
else:
    ext = None
pytestmark = pytest.mark.skipif(ext is None or not sys.platform.startswith("linux"),
                                reason="the compiled extension on Linux (/proc) is needed")


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def every_core_busy():
    """One spinning process per usable core, until the test ends."""
    cores = len(os.sched_getaffinity(0))
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        deadline = time.monotonic() + 20
        while ext.sustained_other_runnable_threads() < cores and time.monotonic() < deadline:
            time.sleep(0.05)
        yield cores
    finally:
        for proc in spinners:
            proc.kill()
        for proc in spinners:
            proc.wait()


def test_every_core_busy_gives_one_thread(two_threads, every_core_busy, monkeypatch):
    assert ext.other_runnable_threads() >= every_core_busy
    assert ext.cpu_threads(8, 1e10) == 1
    monkeypatch.setenv("IRNET_FAST_LOAD_AWARE", "0")
    assert ext.cpu_threads(8, 1e10) == 2


def test_a_load_counts_once_it_lasts_5_ms():
    """The machine turns busy after 5 ms of readings that all found other runnable threads, and
    quiet after 5 ms of readings that found none: blips in either direction change nothing. A gap
    of over 10 s between readings starts afresh."""
    ms, s = 1_000_000, 1_000_000_000
    assert ext.load_streak([(1, 0)]) == [0]
    assert ext.load_streak([(1, 0), (1, 2 * ms), (2, 5 * ms), (1, 90 * ms)]) == [0, 0, 2, 1]
    # a quiet reading inside the first streak restarts it
    assert ext.load_streak([(1, 0), (0, 3 * ms), (1, 6 * ms), (1, 10 * ms), (1, 11 * ms)]) == [0, 0, 0, 0, 1]
    # once busy: a short quiet spell keeps the last count, a long one ends it
    busy = [(2, 0), (2, 6 * ms)]
    assert ext.load_streak(busy + [(0, 7 * ms), (0, 9 * ms), (1, 10 * ms)]) == [0, 2, 2, 2, 1]
    assert ext.load_streak(busy + [(0, 7 * ms), (0, 12 * ms), (1, 13 * ms)]) == [0, 2, 2, 0, 0]
    # stale history
    assert ext.load_streak([(1, 0), (1, 9 * s), (1, 9 * s + ms)]) == [0, 1, 1]
    assert ext.load_streak(busy + [(1, 11 * s), (1, 11 * s + 6 * ms)]) == [0, 2, 0, 1]
    assert ext.load_streak([(0, 0), (0, 6 * ms)]) == [0, 0]


def test_work_size_and_units_bound_the_threads(two_threads, monkeypatch):
    monkeypatch.setenv("IRNET_FAST_LOAD_AWARE", "0")
    assert ext.cpu_threads(8, 1e10) == 2
    assert ext.cpu_threads(1, 1e10) == 1        # one unit
    assert ext.cpu_threads(8, 1.5e7) == 1       # too little work for a second thread
    assert ext.cpu_threads(8, 1.5e5, 1e5) == 1
    assert ext.cpu_threads(8, 2e5, 1e5) == 2


def test_ops_cap_this_threads_count_while_every_core_is_busy(two_threads, every_core_busy, monkeypatch):
    """Inside an op, torch's own parallel regions get one thread on a busy machine; other threads of
    the process and the code after the op keep two."""
    import threading

    seen = {}

    def probe(x):
        seen["inside"] = torch.get_num_threads()
        other = threading.Thread(target=lambda: seen.__setitem__("other thread", torch.get_num_threads()))
        other.start()
        other.join()
        return x

    capped = _ext.threads_capped_when_busy(probe)
    capped(torch.zeros(1))
    assert seen == {"inside": 1, "other thread": 2} and torch.get_num_threads() == 2
    monkeypatch.setenv("IRNET_FAST_LOAD_AWARE", "0")
    capped(torch.zeros(1))
    assert seen["inside"] == 2
    with pytest.raises(ZeroDivisionError):
        _ext.threads_capped_when_busy(lambda x: 1 / 0)(torch.zeros(1))
    assert torch.get_num_threads() == 2


def test_numba_kernels_follow_the_capped_count(two_threads, every_core_busy, monkeypatch):
    """The numba backend runs on no more of numba's threads than torch's count for the calling
    thread, so the cap of a busy machine reaches its per-pass parallel regions too; numba's count
    is restored after the op."""
    _numba = pytest.importorskip("irnet_fast.ops._numba")
    import numba

    from irnet_fast import ops
    numba.set_num_threads(2)
    seen = []
    kernel = _numba._walk_padded_kernel

    def probe(*args):
        seen.append(numba.get_num_threads())
        return kernel(*args)

    monkeypatch.setattr(_numba, "_walk_padded_kernel", probe)
    x, edge = torch.rand(1, 2, 9, 11), torch.rand(1, 1, 9, 11)
    ops.random_walk(x, edge, backend="numba", method="steps", exp_times=1)
    monkeypatch.setenv("IRNET_FAST_LOAD_AWARE", "0")
    ops.random_walk(x, edge, backend="numba", method="steps", exp_times=1)
    torch.set_num_threads(1)  # the user's own count bounds numba's as well
    ops.random_walk(x, edge, backend="numba", method="steps", exp_times=1)
    assert seen == [1, 2, 1] and numba.get_num_threads() == 2


@pytest.mark.parametrize("size", [(64, 64), (97, 61), (71, 130)])  # work enough for two threads
@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["chebyshev", "steps"])
def test_two_threads_on_one_image_equal_one_thread(size, channels, dtype, method, monkeypatch):
    """One image on two threads shares its rows between them (two bands that wait on each other,
    random_walk_cpu.cpp; float32 tiles up to 3 channels, float64 rows up to 4) or splits its channels
    (4 channels of the tiles): bit for bit the passes of one thread. Without the bands' waits the
    two-band cases differ."""
    from irnet_fast import ops
    from ..helpers import boundary_map, cams
    monkeypatch.setenv("IRNET_FAST_LOAD_AWARE", "0")  # two threads even beside other jobs
    edge, x = boundary_map(1, *size, seed=channels).to(dtype), cams(1, channels, *size, seed=1).to(dtype)
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (2, 1):
            torch.set_num_threads(threads)
            results.append(ops.random_walk(x, edge, exp_times=8, backend="cpp", method=method))
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=0)
