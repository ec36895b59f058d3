"""The command line (argument handling and error messages), the walk demo and the CI-sized demo."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from irnet_fast import cli, walk_demo
from irnet_fast.cli import PIPELINE_COMMANDS
from irnet_fast.pipeline import steps as registry

REPO = Path(__file__).resolve().parents[1]


def test_walk_demo_writes_png_and_walk_beats_cams(tmp_path):
    summary = walk_demo.run(str(tmp_path), 94, 125, seed=0)
    assert (tmp_path / "random_walk_demo.png").stat().st_size > 1000
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert summary["rw_miou"] >= summary["cam_miou"] + 10
    for name, row in summary["backends"].items():
        diff = next(v for k, v in row.items() if k.startswith("max_rel_diff"))
        assert diff <= 1e-3, name
    assert not list(tmp_path.glob("*.tmp"))


def test_info_and_argument_errors(capsys):
    assert cli.main(["info"]) == 0
    assert '"backends"' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["walk-demo", "--height", "0"])
    assert "--height and --width expected >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["nonsense"])
    with pytest.raises(SystemExit) as exc:
        cli.main(["make-cam", "--dataset", "kitti"])
    assert exc.value.code == 2 and "invalid choice: 'kitti'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["demo", "--images", "3"])
    assert "--images expected >= 16" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", *PIPELINE_COMMANDS, "make-synthetic", "demo", "walk-demo", "bench", "info"])
def test_every_command_has_complete_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert f"irnet-fast {command}" in text
    if command in PIPELINE_COMMANDS or command == "run":
        for flag in ("--config", "--dataset", "--data-root", "--backbone", "--backbone-weights", "--device",
                     "--workers", "--out", "--backend", "--set"):
            assert flag in text, flag


@pytest.fixture()
def dataset(tmp_path):
    assert cli.main(["make-synthetic", "--out", str(tmp_path / "data"), "--num-train", "4", "--num-val", "0",
                     "--size", "32", "48"]) == 0
    return tmp_path / "data"


def _fails(capsys, argv, message):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err


def test_pipeline_command_errors(capsys, tmp_path, dataset):
    out = ["--out", str(tmp_path / "out")]
    _fails(capsys, ["make-cam", "--data-root", str(tmp_path / "missing"), *out], "data root not found")
    _fails(capsys, ["make-cam", "--dataset", "synthetic", "--data-root", str(tmp_path / "missing"), *out],
           "irnet-fast make-synthetic")
    _fails(capsys, ["train-cam", "--data-root", str(dataset), "--backbone-weights", str(tmp_path / "w.pth"), *out],
           "backbone weights file not found")
    _fails(capsys, ["make-cam", "--data-root", str(dataset), "--weights", str(tmp_path / "cam.pth"), *out],
           "weights file not found")
    _fails(capsys, ["make-cam", "--data-root", str(dataset), "--set", "infer_split=train", *out],
           "CAM weights not found")
    _fails(capsys, ["eval-sem-seg", "--data-root", str(dataset), "--set", "infer_split=train", *out],
           "run make_sem_seg first")
    _fails(capsys, ["run", "--data-root", str(dataset), "--steps", "make_cam,paint", *out], "unknown step 'paint'")
    _fails(capsys, ["run", "--data-root", str(dataset), "--from", "make_sem_seg", "--to", "make_cam", *out],
           "comes after")
    _fails(capsys, ["tune", "--data-root", str(dataset), "--set", "cam.batchsize=3", *out],
           "config error: unknown config key 'cam.batchsize'")
    _fails(capsys, ["make-cam", "--dataset", "coco", "--data-root", str(dataset), *out], "needs --coco-ann-file")
    _fails(capsys, ["make-cam", "--data-root", str(dataset), "--workers", "-1", *out], "config key 'num_workers': expected an integer >= 0, got -1")
    _fails(capsys, ["make-cam", "--data-root", str(dataset), "--config", str(tmp_path / "c.toml"), *out],
           "config file not found")


def test_make_synthetic_and_config_file(tmp_path, dataset):
    assert (dataset / "JPEGImages").is_dir() and len(list((dataset / "JPEGImages").glob("*.jpg"))) == 4
    toml = tmp_path / "c.toml"
    toml.write_text('backbone = "resnet18"\n[cam]\nbatch_size = 2\n')
    args = cli.build_parser().parse_args(["train-cam", "--config", str(toml), "--data-root", str(dataset),
                                          "--set", "cam.num_epochs=7", "--workers", "0"])
    cfg = cli.config_from_args(args)
    assert (cfg.backbone, cfg.cam_batch_size, cfg.cam_num_epochs, cfg.num_workers) == ("resnet18", 2, 7, 0)
    assert cfg.dataset_root == str(dataset)


def test_python_dash_m_runs_the_cli():
    proc = subprocess.run([sys.executable, "-m", "irnet_fast", "run", "--help"], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 0 and "--from" in proc.stdout


def test_quick_demo_end_to_end(tmp_path, capsys):
    """The CI-sized demo: every step on small generated images; the random walk must beat the CAMs,
    the summary carries every key, and the report links images that exist."""
    assert cli.main(["demo", "--quick", "--out", str(tmp_path), "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "random-walk semantic mIoU" in table
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in ("cam_miou", "ir_label_precision", "ir_label_coverage", "sem_miou", "ins_map50", "ins_map70",
                "val_sem_miou"):
        assert isinstance(summary[key], float), key
    assert summary["sem_miou"] > summary["cam_miou"] + 3  # measured: 48.7 -> 59.0
    assert summary["ins_map50"] > 30  # measured: 60.0
    # the final DeepLab, trained on the pseudo labels, on the held-out images (measured: 72%; the
    # full demo's target is 90%, its longer training reaches it)
    assert summary["val_sem_miou"] >= 0.6 * summary["sem_miou"]
    if "eval_ins" in registry.DEFAULT_ORDER:
        assert isinstance(summary["val_ins_map50"], float) and isinstance(summary["val_ins_map70"], float)
        # two epochs of Mask R-CNN (measured: 17.6, 29% of the pseudo labels'; the full demo's 112%):
        # it has learnt to find the objects, where an untrained head scores about 0
        assert summary["val_ins_map50"] >= 0.1 * summary["ins_map50"]
    assert set(summary["seconds"]) >= {"train_cam", "make_cam", "make_sem_seg", "make_ins_seg", "train_sem",
                                       "eval_sem", "total"}
    report = (tmp_path / "report.md").read_text()
    links = [line.split("](", 1)[1].rstrip(")") for line in report.splitlines() if line.startswith("![")]
    assert links and all((tmp_path / link).is_file() for link in links)
    assert any(link.startswith("panels_val/") for link in links)  # the final models on held-out images


def test_demo_summary_leaves_out_the_metrics_of_missing_steps():
    from irnet_fast import demo
    summary = {}
    demo._summary_value({"eval_sem": {"miou": 61.5}}, "eval_sem", "miou", "val_sem_miou", summary)
    demo._summary_value({"eval_sem": {"miou": 61.5}}, "eval_ins", "map50", "val_ins_map50", summary)
    assert summary == {"val_sem_miou": 61.5}
    lines = {line[:30].strip(): line[30:].strip() for line in demo.format_table(summary).splitlines()}
    assert lines["val: DeepLab mIoU"] == "61.5" and lines["val: Mask R-CNN mAP@0.5"] == "n/a"
