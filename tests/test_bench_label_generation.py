"""benchmarks.label_generation on tiny sizes: every case runs in its subprocess and the Markdown
report has its sections, tables and numbers (the full-size run is ``python -m
benchmarks.label_generation``)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    label_generation = pytest.importorskip("benchmarks.label_generation")
    out = tmp_path_factory.mktemp("labels") / "RESULTS_LABELS.md"
    run, heads = label_generation.run_cases(
        out, centroid_size=(16, 20), iterations=30, image_size=(64, 80), backbone="resnet18",
        walk_sizes=((16, 20), (24, 32)), quick=True, command="pytest tiny run", progress=False)
    return label_generation, run, heads, out


def test_every_case_ran(tiny_run):
    _, run, _, _ = tiny_run
    errors = [r["error"] for r in run["results"] if "error" in r]
    assert not errors, errors
    ops = [r["spec"]["op"] for r in run["results"]]
    assert ops.count("sem_seg") == 1 and ops.count("random_walk") == 4
    cent = {r["spec"]["method"]: r for r in run["results"] if r["spec"]["op"] == "centroids"}
    assert "reference" in cent
    for method, res in cent.items():
        assert res["median_s"] > 0 and res["peak_mb"] >= 0
        if method != "reference":
            assert res["exact"] is True, method
    sem = next(r for r in run["results"] if r["spec"]["op"] == "sem_seg")
    assert sem["map"] == [16, 20] and sem["label_shape"] == [64, 80]
    med = sem["medians_s"]
    assert all(med[k] > 0 for k in ("irnet", "walk", "rest", "step"))
    assert med["step"] >= max(med["irnet"], med["walk"], med["rest"])
    assert len(sem["walk_1thread_s"]) >= 3


def test_markdown(tiny_run):
    module, run, heads, out = tiny_run
    text = out.read_text()
    for section in ("# irnet_fast label-generation benchmarks", "## Machine", "## Method",
                    "## find_centroids_with_refinement", "## make_sem_seg per image (CPU)",
                    "## Random walk on large maps (cpp, 3 channels)", "## Headlines"):
        assert section in text, section
    assert "`pytest tiny run`" in text and "load average" in text
    assert re.search(r"Generated \d{4}-\d\d-\d\d \d\d:\d\d UTC", text)
    assert re.search(r"\| 16x20 \| 30 \| NumPy reference \| [\d.]+ \| [\d.]+ \| \d+ \|", text)
    assert re.search(r"\| 16x20 \| 30 \| cpp \(irnet_fast\) \| [\d.]+ \| [\d.]+ \| \d+ \| [\d.-]+ \| [\d.]+x \|", text)
    assert re.search(r"\| random walk \(cpp, 256 steps\) \| [\d.]+ \| [\d.]+ \| [\d.]+% \|", text)
    assert re.search(r"\| - \| 24x32 \| 768 \| 1 \| [\d.]+ \| [\d.]+ \| \d+ \| [\d.-]+ \| 2\.4 MB \(2\.2 MiB\) \|", text)
    assert "the same walk on 1 thread" in text
    assert "resnet18 (quick mode: not the paper's ResNet-50)" in text
    statuses = [h["status"] for h in heads]
    assert statuses[0] in ("met", "not met") and statuses[1] in ("met", "not met")
    assert re.search(r"\| cpp find_centroids_with_refinement 16x20 x30 >= 100x faster than the NumPy reference "
                     r"\| [\d.]+x .*\| (met|not met) \|", text)
    assert not list(out.parent.glob(".*.tmp"))          # written atomically: no leftover temporary file


def test_dense_copy_sizes():
    from benchmarks.label_generation import dense_copy_bytes
    assert dense_copy_bytes((160, 160)) == 25600 ** 2 * 4            # 2.6 GB, 2.4 GiB
    assert round(dense_copy_bytes((256, 512)) / 1e9) == 69           # 68.7 GB, 64 GiB


@pytest.mark.parametrize("codes, expected", [((0, 0), 0), ((1, 0), 1), ((0, 1), 1), ((None, 3), 3)])
def test_cli_bench_runs_both(monkeypatch, codes, expected):
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks import label_generation, report
    from irnet_fast import cli
    calls = []
    monkeypatch.setattr(report, "main", lambda argv: calls.append(("report", argv)) or codes[0])
    monkeypatch.setattr(label_generation, "main", lambda argv: calls.append(("labels", argv)) or codes[1])
    assert cli.main(["bench", "--quick"]) == expected
    assert calls == [("report", ["--quick"]), ("labels", ["--quick"])]
