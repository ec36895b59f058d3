"""benchmarks.report renders its tables and targets from a run (synthetic figures, nothing timed)."""
import pytest


def _res(spec, ms, **extra):
    return dict({"spec": spec, "times_s": [ms / 1e3] * 3, "median_s": ms / 1e3, "setup_s": 0.0, "peak_mb": 1.0,
                 "hwm_reset": True, "mlocked": True, "info": {"N": 94 * 125}}, **extra)


def test_report_renders_methods_centroids_and_load(tmp_path):
    report = pytest.importorskip("benchmarks.report")
    rw = lambda m, ms: _res({"op": "random_walk", "method": m, "size": [94, 125]}, ms)  # noqa: E731
    cent = lambda m, f, ms, **kw: _res({"op": "centroids", "method": m, "field": f, "size": [94, 125]}, ms, **kw)  # noqa: E731
    quiet = dict(rw("cpp", 4.0), spec={"op": "random_walk", "method": "cpp", "size": [94, 125], "group": "load"})
    loaded = dict(rw("cpp", 10.0), spec=dict(quiet["spec"], load=True))
    results = [rw("cpp", 4.0), rw("cpp:steps", 12.0), rw("scipy_csr", 600.0), rw("numba", 8.0),
               rw("numba:steps", 30.0), cent("reference", "clean", 200.0), cent("cpp", "clean", 1.0, exact=True),
               cent("reference", "noisy", 200.0), cent("cpp", "noisy", 10.0, exact=True), quiet, loaded]
    run = {"quick": True, "command": "python -m benchmarks.report --quick", "total_s": 1.0, "started": "now",
           "machine": {"CPU": "test"}, "load_start": [0, 0, 0], "load_end": [0, 0, 0], "results": results}
    out = tmp_path / "RESULTS.md"
    heads = {h["target"]: h for h in report._render(run, out, tmp_path / "plot.png")}
    text = out.read_text()
    for section in ("## Random walk", "## find_centroids_with_refinement", "## Under load", "## Targets"):
        assert section in text
    assert "cpp (irnet_fast), 256 steps" in text and "| random_walk 94x125 cpp | 4.00 | 10.00 | 2.50x |" in text
    assert heads["cpp random walk 94x125 (C=3) <= 5 ms"]["status"] == "met"
    assert heads["cpp 94x125 >= 120x faster than SciPy CSR (256 steps)"]["status"] == "met"  # 150x
    assert heads["numba random walk within 3x of cpp (every size, both methods)"]["status"] == "met"  # 2.0x, 2.5x
    clean = "cpp find_centroids_with_refinement 94x125 x300, clean field: >= 100x the NumPy reference"
    noisy = "cpp find_centroids_with_refinement 94x125 x300, noisy field: >= 30x the NumPy reference"
    assert heads[clean]["status"] == "met" and heads[noisy]["status"] == "not met"  # 200x, 20x
    load = "every cpp op under load (2 busy 2-thread torch processes) at most 3x its quiet time"
    assert heads[load]["status"] == "met" and "2.50x" in heads[load]["measured"]
