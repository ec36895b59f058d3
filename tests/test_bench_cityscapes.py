"""The Cityscapes benchmark's report: its target line from given figures, and its section in a
results file replaced in place (not duplicated)."""
from benchmarks import cityscapes as bc


def _res(op, times, peak, **parts):
    parts = {k: list(v) for k, v in parts.items()}
    parts.setdefault("step", list(times))
    return {"spec": {"op": op}, "parts_s": parts, "times_s": list(times), "peak_mb": peak, "threads": 2}


def _run(walk_s, step_peak):
    walk3 = _res("walk", [0.2, 0.2, 0.2], 10.0)
    walk3["spec"]["channels"] = 3
    results = [_res("irnet", [4.0, 5.0], 1000.0), _res("walk", [0.5, 0.7, 0.6], 40.0), walk3,
               _res("sem_seg", [5.0], step_peak, irnet=[4.0], walk=[walk_s], rest=[0.2]),
               _res("ir_label", [30.0], 900.0),
               _res("ins_seg", [2.0], 500.0, centroids=[0.1], clusters=[0.1], walk=[1.0], instances=[0.8],
                    clusters_n=[12.0], instances_n=[20.0])]
    return {"command": "python -m benchmarks.cityscapes", "started": "2026-01-01 00:00", "total_s": 10.0,
            "machine": {"cores": "2"}, "load_start": [3.0, 0, 0], "load_end": [4.0, 0, 0], "results": results,
            "backbone": "resnet50"}


def test_target_line_and_section(tmp_path):
    text = "\n".join(bc.render(_run(0.8, 1250.0)))
    assert "0.80 s in the step (0.60 s alone)" in text and "+250 MB" in text and "**met**" in text
    assert "took 3.00x the time of 3 channels" in text
    assert "loaded machine" in text and "make_ins_seg 6.5 s (IRNet + the rest)" in text
    assert "**not met**" in "\n".join(bc.render(_run(1.2, 1250.0)))
    assert "**not met**" in "\n".join(bc.render(_run(0.8, 1300.0)))
    path = tmp_path / "R.md"
    path.write_text("# results\n\nbody\n")
    bc.write_section(path, bc.render(_run(0.8, 1250.0)))
    bc.write_section(path, bc.render(_run(0.9, 1250.0)))
    out = path.read_text()
    assert out.startswith("# results\n\nbody\n") and out.count(bc.START) == 1 and "0.90 s in the step" in out
