"""The per-image steps, evaluation and export on a tiny synthetic dataset, end to end (CPU).

One module-scoped run trains tiny ResNet-18 models (seconds); the tests then check the file
formats, resume (an interrupted run finishes byte-identical to an uninterrupted one), failures
reported per image, an image without instances, and the evaluation outputs.
"""
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage
from PIL import Image

from irnet_fast._io import load_npz
from irnet_fast.crf import crf_available
from irnet_fast.data import generate_synthetic
from irnet_fast.data.voc import load_label_png
from irnet_fast.errors import InputValueError
from irnet_fast.pipeline import (Config, StepFailed, cam_to_ir_label, eval_cam, eval_ins_seg, eval_ir_label,
                                 eval_sem_seg, export_coco, make_cam, make_ins_seg, make_sem_seg, run_pipeline, tune)
from irnet_fast.pipeline.run import run_step
from irnet_fast.pipeline.make_cam import load_cam_file, strided_size

SIZE = (48, 64)
REPO = Path(__file__).resolve().parents[2]


def _config(root: Path, out: Path, **kw) -> Config:
    base = dict(dataset_root=str(root), out_dir=str(out), backbone="resnet18", cam_split="train", irn_split="train",
                infer_split="train", mean_shift_split="train", cam_batch_size=4, cam_num_epochs=1,
                cam_crop_size=64, cam_resize_long=(56, 72), cam_scales=(1.0, 0.5), irn_batch_size=4,
                irn_num_epochs=1, irn_crop_size=64, irn_rescale=(0.9, 1.1), irn_init_from_cam=True,
                num_workers=0, device="cpu", log_interval=0, crf=crf_available(), exp_times=4,
                centroid_iterations=50, save_rw_scores=True, radius=5, irn_pad_to=0,  # tiny images: no 512 pad
                deeplab_backbone="resnet18", deeplab_init_from_cam=True, deeplab_output_stride=16,
                deeplab_batch_size=4, deeplab_num_epochs=2, deeplab_crop_size=48, deeplab_rescale=(0.9, 1.1),
                deeplab_test_scales=(1.0, 0.75))
    base.update(kw)
    return Config(**base)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny dataset and the pipeline up to the pseudo labels' evaluation run once: (root, out,
    cfg, results); the final networks have their own tests."""
    base = tmp_path_factory.mktemp("steps")
    root = generate_synthetic(base / "data", num_train=8, num_val=2, size=SIZE, seed=3)
    out = base / "out"
    cfg = _config(root, out)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = run_pipeline(cfg, progress=False, stop="eval_sem")
    return root, out, cfg, results


def _tree_bytes(folder: Path):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.startswith(".")}


def test_make_cam_files(trained):
    root, out, cfg, _ = trained
    ids = (root / "ImageSets/Segmentation/train.txt").read_text().split()
    assert sorted(p.stem for p in (out / "cam").glob("*.npz")) == sorted(ids)
    for name in ids:
        data = load_cam_file(out / "cam" / f"{name}.npz")
        image = np.asarray(Image.open(root / "JPEGImages" / f"{name}.jpg"))
        labels = json.loads((root / "synthetic.json").read_text())["images"][name]["instance_classes"]
        assert data["keys"].dtype == np.int64 and data["keys"].tolist() == sorted(set(labels))
        assert data["cam"].shape == (len(data["keys"]),) + strided_size(*image.shape[:2])
        assert data["high_res"].shape == (len(data["keys"]),) + image.shape[:2]
        for arr in (data["cam"], data["high_res"]):
            assert arr.dtype == np.float32 and arr.min() >= 0
            peaks = arr.reshape(len(arr), -1).max(1)  # each map divided by its max + 1e-5 (all-zero maps stay 0)
            assert np.all((peaks == 0) | ((peaks > 0.99) & (peaks <= 1)))
    assert not list((out / "cam").glob(".*tmp*"))


def test_make_cam_resume_is_byte_identical(trained, tmp_path):
    root, out, cfg, _ = trained
    shutil.copy(out / "cam.pth", tmp_path / "cam.pth")
    cfg2 = cfg.override(out_dir=str(tmp_path))
    first = make_cam(cfg2, progress=False, limit=3)  # "interrupted" after 3 images
    assert (first.done, first.skipped) == (3, 0)
    (tmp_path / "cam" / sorted(p.name for p in (tmp_path / "cam").iterdir())[0]).write_bytes(b"broken")
    second = make_cam(cfg2, progress=False)
    assert second.done == 8 - 2 and second.skipped == 2 and second.ok
    assert _tree_bytes(tmp_path / "cam") == _tree_bytes(out / "cam")
    summary = json.loads((tmp_path / "make_cam.summary.json").read_text())
    assert summary["done"] == 6 and summary["skipped"] == 2 and summary["failed"] == {}


def test_legacy_npy_needs_allow_pickle(trained, tmp_path):
    _, out, _, _ = trained
    path = next((out / "cam").glob("*.npz"))
    data = load_cam_file(path)
    legacy = tmp_path / "x.npy"
    np.save(legacy, {"keys": data["keys"], "cam": torch.from_numpy(data["cam"]), "high_res": data["high_res"]})
    with pytest.raises(ValueError, match="allow_pickle=True"):
        load_cam_file(legacy)
    back = load_cam_file(legacy, allow_pickle=True)
    np.testing.assert_array_equal(back["cam"], data["cam"])


def test_ir_labels(trained):
    root, out, cfg, _ = trained
    for path in (out / "ir_label").glob("*.png"):
        label = load_label_png(path)
        gt = load_label_png(root / "SegmentationClass" / path.name)
        assert label.shape == gt.shape
        assert set(np.unique(label)) <= set(np.unique(gt)) | {0, 255}
    result = json.loads((out / "eval_ir_label.json").read_text())
    assert 0 <= result["precision"] <= 100 and 0 < result["coverage"] <= 100


def test_corrupt_image_is_reported_not_fatal(trained, tmp_path):
    root, out, cfg, _ = trained
    data = tmp_path / "data"
    shutil.copytree(root, data)
    victim = (data / "ImageSets/Segmentation/train.txt").read_text().split()[1]
    (data / "JPEGImages" / f"{victim}.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "out").mkdir()
    shutil.copy(out / "cam.pth", tmp_path / "out" / "cam.pth")
    cfg2 = cfg.override(dataset_root=str(data), out_dir=str(tmp_path / "out"))
    summary = make_cam(cfg2, progress=False)
    assert summary.done == 7 and list(summary.failed) == [victim]
    assert "cannot decode image" in summary.failed[victim]
    cfg3 = cfg2.override(out_dir=str(tmp_path / "nothing"))
    (tmp_path / "nothing").mkdir()
    shutil.copy(out / "cam.pth", tmp_path / "nothing" / "cam.pth")
    with pytest.raises(StepFailed, match="8 failed"):  # no CAM files at all: every image fails
        cam_to_ir_label(cfg3.override(crf=False), progress=False)


def test_failed_image_is_carried_through_and_left_out_of_evaluation(trained, tmp_path):
    root, out, cfg, _ = trained
    data = tmp_path / "data"
    shutil.copytree(root, data)
    victim = (data / "ImageSets/Segmentation/train.txt").read_text().split()[2]
    (data / "JPEGImages" / f"{victim}.jpg").write_bytes(b"\x00" * 10)
    run_out = tmp_path / "out"
    run_out.mkdir()
    for name in ("cam.pth", "irn.pth"):
        shutil.copy(out / name, run_out / name)
    (run_out / "cam").mkdir()
    stale = run_out / "cam" / ".x.npz.tmp999999999"  # left by a killed writer (no such pid)
    stale.write_bytes(b"partial")
    cfg2 = cfg.override(dataset_root=str(data), out_dir=str(run_out))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = run_pipeline(cfg2, progress=False, start="make_cam", stop="eval_sem_seg")
    assert not stale.exists()
    assert list(results["make_cam"]["result"].failed) == [victim]
    ir = results["cam_to_ir_label"]["result"]
    assert list(ir.failed) == [victim] and ir.failed[victim].startswith("failed in make_cam: ")
    assert list(results["make_sem_seg"]["result"].failed) == [victim]
    for step in ("eval_cam", "eval_sem_seg"):
        metrics = results[step]["result"]
        assert (metrics["images"], metrics["failed_upstream"]) == (7, 1) and 0 <= metrics["miou"] <= 100


def test_sem_seg_and_tune(trained):
    root, out, cfg, results = trained
    ids = (root / "ImageSets/Segmentation/train.txt").read_text().split()
    for name in ids:
        label = load_label_png(out / "sem_seg" / f"{name}.png")
        cams = load_cam_file(out / "cam" / f"{name}.npz")
        assert label.shape == cams["high_res"].shape[1:]
        assert set(np.unique(label)) <= {0} | set((cams["keys"] + 1).tolist())
        rw = load_npz(out / "rw" / f"{name}.npz", ("keys", "rw"))
        assert rw["rw"].dtype == np.float16 and rw["rw"].shape == cams["cam"].shape
    sem = results["eval_sem_seg"]["result"]
    assert 0 <= sem["miou"] <= 100 and set(sem["iou"]) == {"background", *cfg_class_names(cfg)}
    tuned = tune(cfg, [0.1, cfg.sem_seg_bg_thres, 0.9])
    current = [r["miou"] for r in tuned["sweep"] if r["threshold"] == cfg.sem_seg_bg_thres][0]
    # tuning at the current threshold from float16 scores reproduces the labels' mIoU closely
    assert abs(current - sem["miou"]) < 1.0
    best = max(tuned["sweep"], key=lambda r: r["miou"])
    assert (tuned["best_threshold"], tuned["best_miou"]) == (best["threshold"], best["miou"])


def test_affinitynet_walk_steps(trained, tmp_path):
    """train_aff, make_sem_seg_aff and eval_sem_seg_aff (on request) on the shared run's CAMs and IR labels."""
    root, out, cfg, results = trained
    shutil.copytree(out / "cam", tmp_path / "cam")
    shutil.copytree(out / "ir_label", tmp_path / "ir_label")
    shutil.copy(out / "cam.pth", tmp_path / "cam.pth")
    c = cfg.override(out_dir=str(tmp_path), aff_num_epochs=1, aff_batch_size=4, aff_feature_dim=8, aff_logt=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_pipeline(c, steps=["train_aff", "make_sem_seg_aff", "eval_sem_seg_aff"], progress=False)
    ids = (root / "ImageSets/Segmentation/train.txt").read_text().split()
    assert (tmp_path / "aff.pth").is_file() and (tmp_path / "aff_history.json").is_file()
    for name in ids:
        label = load_label_png(tmp_path / "sem_seg_aff" / f"{name}.png")
        keys = load_cam_file(out / "cam" / f"{name}.npz")["keys"]
        assert label.shape == SIZE and set(np.unique(label)) <= {0} | set((keys + 1).tolist())
    res = json.loads((tmp_path / "eval_sem_seg_aff.json").read_text())
    assert 0 <= res["miou"] <= 100 and res["images"] == len(ids)
    assert res.keys() == results["eval_sem_seg"]["result"].keys()


def test_affinity_head_concatenates_the_four_stages():
    """Channel block k of the head's features is the 1x1 convolution of backbone stage k + 1,
    upsampled bilinearly to the stride-4 grid and cropped to ceil(size / 4)."""
    import torch.nn.functional as F
    from irnet_fast.pipeline.train_aff import AffinityHead
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        head = AffinityHead("resnet18", 10).eval()
    img = torch.randn(2, 3, 50, 70)
    out = head(img)
    assert out.shape == (2, 10, 13, 18)
    assert [h.out_channels for h in head.heads] == [2, 2, 2, 4]
    b = head.backbone
    x = F.pad(img, (0, 10, 0, 14))  # to multiples of 16
    stages = [b.layer1(b.stem(x))]
    for layer in (b.layer2, b.layer3, b.layer4):
        stages.append(layer(stages[-1]))
    start = 0
    for conv, stage in zip(head.heads, stages):
        expected = F.interpolate(conv(stage), (16, 20), mode="bilinear", align_corners=False)[..., :13, :18]
        torch.testing.assert_close(out[:, start:start + conv.out_channels], expected)
        start += conv.out_channels
    with pytest.raises(ValueError, match="feature_dim expected >= 4"):
        AffinityHead("resnet18", 3)


def cfg_class_names(cfg):
    from irnet_fast.pipeline.common import infer_source
    return infer_source(cfg).class_names


def test_ins_seg_files_eval_and_export(trained, tmp_path):
    root, out, cfg, results = trained
    for path in (out / "ins_seg").glob("*.npz"):
        data = load_npz(path, ("score", "label", "class"))
        p = len(data["score"])
        assert data["score"].dtype == np.float32 and data["class"].dtype == np.int64 and data["class"].shape == (p,)
        assert data["label"].dtype == np.int32 and data["label"].shape == SIZE
        # every instance is one non-empty 4-connected segment
        assert np.array_equal(np.unique(data["label"]), np.arange(p + 1)[int(data["label"].min() > 0):])
        assert all(ndimage.label(data["label"] == i + 1)[1] == 1 for i in range(p))
    res = results["eval_ins_seg"]["result"]
    assert 0 <= res["map50"] <= 100 and 0 <= res["map70"] <= res["map50"] + 1e-9
    exported = export_coco(cfg, tmp_path / "coco.json")
    coco = json.loads((tmp_path / "coco.json").read_text())
    assert len(coco["images"]) == 8 and len(coco["annotations"]) == exported["instances"]
    assert all(a["score"] > 0 and a["segmentation"]["size"] == list(SIZE) for a in coco["annotations"])


def test_image_without_instances(trained, tmp_path):
    """An image whose CAM file lists no class gets empty instance arrays and an all-background label."""
    root, out, cfg, _ = trained
    for sub in ("cam",):
        shutil.copytree(out / sub, tmp_path / sub)
    shutil.copy(out / "irn.pth", tmp_path / "irn.pth")
    name = (root / "ImageSets/Segmentation/train.txt").read_text().split()[0]
    cam = load_cam_file(tmp_path / "cam" / f"{name}.npz")
    np.savez(tmp_path / "cam" / f"{name}.npz", keys=np.zeros(0, np.int64),
             cam=np.zeros((0,) + cam["cam"].shape[1:], np.float32),
             high_res=np.zeros((0,) + cam["high_res"].shape[1:], np.float32))
    cfg2 = cfg.override(out_dir=str(tmp_path))
    assert make_ins_seg(cfg2, progress=False).ok
    assert make_sem_seg(cfg2, progress=False).ok
    data = load_npz(tmp_path / "ins_seg" / f"{name}.npz")
    assert data["score"].shape == (0,) and data["label"].shape == SIZE and data["class"].shape == (0,)
    assert not data["label"].any()
    assert not load_label_png(tmp_path / "sem_seg" / f"{name}.png").any()


def test_eval_outputs_and_missing_inputs(trained, tmp_path):
    root, out, cfg, results = trained
    cam = json.loads((out / "eval_cam.json").read_text())
    assert cam["threshold"] == 0.15 and 0 <= cam["miou"] <= 100
    sweep = eval_cam(cfg, [0.05, 0.15, 0.5])["sweep"]
    assert [r["threshold"] for r in sweep] == [0.05, 0.15, 0.5] and abs(sweep[1]["miou"] - cam["miou"]) < 1e-9
    empty = cfg.override(out_dir=str(tmp_path))
    for fn, producer in ((eval_cam, "make_cam"), (eval_ir_label, "cam_to_ir_label"),
                         (eval_sem_seg, "make_sem_seg"), (eval_ins_seg, "make_ins_seg")):
        with pytest.raises(FileNotFoundError, match=f"8 of 8 input files missing.*run {producer} first"):
            fn(empty)


def test_torchrun_two_processes_shard_make_cam(trained, tmp_path):
    """``torchrun -m irnet_fast make-cam`` with 2 gloo processes: each image once, same arrays."""
    root, out, cfg, _ = trained
    (tmp_path / "out").mkdir()
    shutil.copy(out / "cam.pth", tmp_path / "out" / "cam.pth")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "irnet_fast", "make-cam", "--data-root", str(root), "--out", str(tmp_path / "out"), "--backbone",
           "resnet18", "--device", "cpu", "--workers", "0", "--quiet", "--set", "infer_split=train",
           "--set", "irn_split=train", "--set", "cam_scales=[1.0, 0.5]"]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("make_cam: 8 images, 8 done") == 1  # one summary, printed by rank 0
    summary = json.loads((tmp_path / "out" / "make_cam.summary.json").read_text())
    assert (summary["total"], summary["done"], summary["failed"]) == (8, 8, {})
    for path in sorted((out / "cam").glob("*.npz")):
        a, b = load_cam_file(path), load_cam_file(tmp_path / "out" / "cam" / path.name)
        np.testing.assert_array_equal(a["keys"], b["keys"])
        np.testing.assert_allclose(a["cam"], b["cam"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(a["high_res"], b["high_res"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("step,folder,inputs", [
    (cam_to_ir_label, "ir_label", ["cam"]),
    (make_sem_seg, "sem_seg", ["cam", "irn.pth"]),
    (make_ins_seg, "ins_seg", ["cam", "irn.pth"]),
])
def test_interrupted_steps_resume_byte_identical(trained, tmp_path, step, folder, inputs):
    root, out, cfg, _ = trained
    for name in inputs:
        (shutil.copytree if (out / name).is_dir() else shutil.copy)(out / name, tmp_path / name)
    cfg2 = cfg.override(out_dir=str(tmp_path))
    assert step(cfg2, progress=False, limit=3).done == 3
    rest = step(cfg2, progress=False)
    assert (rest.done, rest.skipped) == (5, 3)
    assert _tree_bytes(tmp_path / folder) == _tree_bytes(out / folder)


def test_coco_pipeline_end_to_end(trained, tmp_path):
    """The same steps on a COCO-format copy of the data (instances JSON with RLE masks, written by
    our exporter from the ground truth): COCO trains and makes labels exactly as VOC does."""
    from irnet_fast.coco_export import export_coco as write_coco
    from irnet_fast.data.voc import VOC12
    root, _, cfg, _ = trained
    voc = VOC12(root, "train")
    records = []
    for name in voc.ids:
        masks, classes = voc.instance_label(name)
        records.append({"file_name": f"{name}.jpg", "height": SIZE[0], "width": SIZE[1], "masks": masks,
                        "labels": classes, "scores": np.ones(len(classes), np.float32)})
    ann = write_coco(records, voc.class_names[:4], tmp_path / "instances.json")
    val = VOC12(root, "val")
    val_records = [{"file_name": f"{n}.jpg", "height": SIZE[0], "width": SIZE[1], "masks": m, "labels": c,
                    "scores": np.ones(len(c), np.float32)} for n in val.ids for m, c in [val.instance_label(n)]]
    val_ann = write_coco(val_records, voc.class_names[:4], tmp_path / "instances_val.json")
    coco_cfg = cfg.override(dataset="coco", dataset_root=str(root / "JPEGImages"), coco_ann_file=str(ann),
                            heldout_dataset_root=str(root / "JPEGImages"), heldout_coco_ann_file=str(val_ann),
                            out_dir=str(tmp_path / "out"))
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = run_pipeline(coco_cfg, progress=False, stop="eval_sem")
    assert torch.load(tmp_path / "out" / "cam.pth", weights_only=True)["classifier.weight"].shape[0] == 4
    assert all(results[s]["result"].done == 8 for s in ("make_cam", "cam_to_ir_label", "make_sem_seg", "make_ins_seg"))
    ins = results["eval_ins_seg"]["result"]
    assert set(ins["ap50"]) == set(voc.class_names[:4]) and 0 <= ins["map50"] <= 100
    assert 0 <= results["eval_sem_seg"]["result"]["miou"] <= 100
    final = results["eval_sem"]["result"]
    assert final["images"] == 2 and set(final["iou"]) == {"background", *voc.class_names[:4]}
    with pytest.raises(InputValueError, match="needs heldout_dataset_root and heldout_coco_ann_file"):
        run_step("eval_sem", coco_cfg.override(heldout_coco_ann_file=None), progress=False)


def test_final_deeplab_trains_and_evaluates_on_the_held_out_split(trained, tmp_path):
    root, out, cfg, results = trained
    assert results["train_sem"]["result"] == out / "deeplab.pth"
    history = json.loads((out / "deeplab_history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    log = (out / "train_sem.log").read_text()
    assert "deeplab_init_from_cam: backbone initialised from" in log and "deeplab epoch 2/2 done" in log
    state = torch.load(out / "deeplab.pth", weights_only=True)
    cam = torch.load(out / "cam.pth", weights_only=True)
    assert state["classifier.4.weight"].shape[:2] == (21, 256)
    assert not torch.equal(state["backbone.layer4.0.conv1.weight"], cam["backbone.layer4.0.conv1.weight"])
    val = (root / "ImageSets/Segmentation/val.txt").read_text().split()
    res = json.loads((out / "eval_sem.json").read_text())
    assert res == results["eval_sem"]["result"]
    assert (res["split"], res["images"], res["failed"]) == ("val", len(val), 0)
    assert 0 <= res["miou"] <= 100 and set(res["iou"]) == {"background", *cfg_class_names(cfg)}
    assert sorted(p.stem for p in (out / "sem_pred").glob("*.png")) == sorted(val)
    # the score is that of the written predictions against the ground truth
    from irnet_fast.metrics import ConfusionMatrix
    conf = ConfusionMatrix(21)
    for name in val:
        pred = load_label_png(out / "sem_pred" / f"{name}.png")
        assert pred.shape == SIZE
        conf.update(pred, load_label_png(root / "SegmentationClass" / f"{name}.png"))
    assert res["miou"] == pytest.approx(100 * conf.miou())
    # resume: predictions newer than the weights are kept, older ones redone
    for name in ("deeplab.pth", "cam.pth"):
        shutil.copy2(out / name, tmp_path / name)  # keeps the times: the weights predate the predictions
    shutil.copytree(out / "sem_pred", tmp_path / "sem_pred")
    cfg2 = cfg.override(out_dir=str(tmp_path))
    run_step("eval_sem", cfg2, progress=False)
    summary = json.loads((tmp_path / "eval_sem.summary.json").read_text())
    assert (summary["done"], summary["skipped"]) == (0, len(val))
    first = tmp_path / "sem_pred" / f"{val[0]}.png"
    os.utime(first, (0, 0))
    run_step("eval_sem", cfg2, progress=False)
    summary = json.loads((tmp_path / "eval_sem.summary.json").read_text())
    assert (summary["done"], summary["skipped"]) == (1, len(val) - 1)


def test_progress_logs_periodic_lines_off_a_terminal(caplog):
    import logging

    from irnet_fast.pipeline.common import Progress
    bar = Progress(True, "make_cam", 4, interval=0.0)
    assert bar.bar is None  # pytest's stderr is not a terminal
    with caplog.at_level(logging.INFO, logger="irnet_fast.pipeline"):
        for i in range(1, 5):
            bar.update(i, "1 failed" if i == 4 else "")
        bar.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4 and lines[0].startswith("make_cam 1/4 (") and "ETA" in lines[0]
    assert lines[-1].startswith("make_cam 4/4") and lines[-1].endswith("1 failed")
    quiet = Progress(False, "make_cam", 4, interval=0.0)
    with caplog.at_level(logging.INFO, logger="irnet_fast.pipeline"):
        quiet.update(1)
        quiet.close()
    assert len(caplog.records) == 4


def test_progress_bar_on_a_terminal(monkeypatch, capsys):
    import sys

    from irnet_fast.pipeline.common import Progress
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    bar = Progress(True, "make_cam", 3)
    for i in range(1, 4):
        bar.update(i, "ok")
    bar.close()
    err = capsys.readouterr().err
    assert "make_cam" in err and "3/3" in err and "ok" in err


_KILL_SCRIPT = """
import json, os, signal, sys, warnings
warnings.simplefilter("ignore")
from irnet_fast.pipeline import Config
from irnet_fast.pipeline.run import run_step
cfg = Config.from_dict(json.loads(sys.argv[1]))
real_replace, calls, kill_at = os.replace, [0], int(sys.argv[3])
def replace(src, dst):  # SIGKILL in the middle of a write: the temporary exists, the target not yet
    calls[0] += 1
    if calls[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)
os.replace = replace
run_step(sys.argv[2], cfg, resume=True, progress=False)
"""


def _weights_close(a, b):
    sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("step,output,inputs,kill_at", [
    ("make_cam", "cam", ["cam.pth"], 3),
    ("cam_to_ir_label", "ir_label", ["cam"], 3),
    ("make_sem_seg", "sem_seg", ["cam", "irn.pth"], 4),
    ("make_ins_seg", "ins_seg", ["cam", "irn.pth"], 3),
    ("train_cam", "cam.pth", [], 2),
    ("train_irn", "irn.pth", ["ir_label", "cam.pth"], 2),
])
def test_sigkill_mid_write_then_resume(trained, tmp_path, step, output, inputs, kill_at):
    root, out, cfg, _ = trained
    for name in inputs:
        (shutil.copytree if (out / name).is_dir() else shutil.copy)(out / name, tmp_path / name)
    cfg2 = cfg.override(out_dir=str(tmp_path))
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    killed = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, json.dumps(cfg2.to_dict()), step, str(kill_at)],
                            env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert list(tmp_path.rglob(".*.tmp*")), "the kill should leave a temporary behind"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_step(step, cfg2, resume=True, progress=False)
    assert not list(tmp_path.rglob(".*.tmp*"))
    if output.endswith(".pth"):
        _weights_close(tmp_path / output, out / output)
    elif step == "make_cam":  # float maps from another process: equal up to threading order
        for path in sorted((out / output).glob("*.npz")):
            a, b = load_npz(path), load_npz(tmp_path / output / path.name)
            np.testing.assert_array_equal(a["keys"], b["keys"])
            np.testing.assert_allclose(a["cam"], b["cam"], rtol=1e-4, atol=1e-5)
    else:
        assert _tree_bytes(tmp_path / output) == _tree_bytes(out / output)
