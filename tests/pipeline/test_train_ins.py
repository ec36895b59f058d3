"""Mask R-CNN on instance labels: the training items, the network, train_ins (resume, 2-process
DDP) and eval_ins (VOC AP and COCOeval on the held-out split, refusing the training split).

Tiny networks (ResNet-18 FPN with 16-channel heads) on 48 x 64 synthetic images, on the CPU.
"""
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from irnet_fast._io import save_npz
from irnet_fast.data import VOC12, generate_synthetic
from irnet_fast.data.instances import InstanceDataset, collate_detection, instance_label_map, mask_boxes
from irnet_fast.errors import InputValueError
from irnet_fast.models import PretrainedWeightsWarning, build_maskrcnn
from irnet_fast.pipeline import Config, eval_ins, load_checkpoint, train_ins

REPO = Path(__file__).resolve().parents[2]
SIZE = (48, 64)


def test_mask_boxes_against_torchvision():
    from torchvision.ops import masks_to_boxes
    rng = np.random.default_rng(0)
    masks = rng.random((5, 7, 9)) < 0.05
    masks[0] = False
    masks[1, 2, 3] = True  # at least one pixel in every other mask
    masks[2:, 6, 8] = True
    boxes = mask_boxes(masks)
    assert boxes.dtype == np.float32 and boxes.shape == (5, 4)
    assert boxes[0].tolist() == [0, 0, 0, 0]
    # torchvision's boxes end at the last pixel; ours one past it (COCO's x + w)
    ref = masks_to_boxes(torch.from_numpy(masks[1:])).numpy() + np.array([0, 0, 1, 1], np.float32)
    np.testing.assert_array_equal(boxes[1:], ref)
    one = np.zeros((1, 4, 6), bool)
    one[0, 1:3, 2] = True  # rows 1..2, column 2
    assert mask_boxes(one).tolist() == [[2, 1, 3, 3]]
    assert mask_boxes(np.zeros((0, 3, 3), bool)).shape == (0, 4)
    with pytest.raises(ValueError, match=r"masks expected a bool array of shape \(P, H, W\)"):
        mask_boxes(np.zeros((3, 3), bool))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """8 train and 4 val images; ``labels/ins_seg`` holds the train images' ground truth as instance
    labels (score 1), plus per image a fragment scored 0 and a 4-pixel instance scored 0.5."""
    root = tmp_path_factory.mktemp("train_ins")
    voc = generate_synthetic(root / "voc", num_train=8, num_val=4, size=SIZE, num_classes=3, seed=0)
    labels = root / "labels"
    for name in VOC12(voc, "train").ids:
        masks, classes = VOC12(voc, "train").instance_label(name)
        label = instance_label_map(masks)
        free = np.flatnonzero(label.reshape(-1) == 0)  # the extras lie on the background
        label.flat[free[:100]] = len(classes) + 1
        label.flat[free[-4:]] = len(classes) + 2
        save_npz(labels / "ins_seg" / f"{name}.npz",
                 {"score": np.concatenate([np.ones(len(classes)), [0.0, 0.5]]).astype(np.float32),
                  "label": label, "class": np.concatenate([classes, [0, 1]]).astype(np.int64)})
    return voc, labels


def test_instance_dataset_items(data):
    voc, labels = data
    source = VOC12(voc, "train")
    ds = InstanceDataset(source, labels / "ins_seg", hflip=False, min_pixels=5)
    for i, name in enumerate(source.ids):
        image, target = ds[i]
        masks, classes = source.instance_label(name)
        assert image.shape == (3,) + SIZE and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
        np.testing.assert_array_equal(image.permute(1, 2, 0).mul(255).round().byte().numpy(), source.load_image(name))
        # the fragment (score 0) and the 4-pixel instance are left out: the ground truth remains
        np.testing.assert_array_equal(target["masks"].numpy().astype(bool), masks)
        assert target["masks"].dtype == torch.uint8 and target["name"] == name
        assert target["labels"].tolist() == (classes + 1).tolist()
        np.testing.assert_array_equal(target["boxes"].numpy(), mask_boxes(masks))
    assert len(InstanceDataset(source, labels / "ins_seg", hflip=False, min_pixels=4)[0][1]["labels"]) == \
        len(source.instance_label(source.ids[0])[1]) + 1
    # flips: a function of (seed, epoch, index); the boxes follow the flipped masks
    flip = InstanceDataset(source, labels / "ins_seg", seed=0, min_pixels=5)
    seen = set()
    for epoch in range(4):
        flip.set_epoch(epoch)
        image, target = flip[1]
        plain_image, plain = ds[1]
        flipped = torch.equal(image, plain_image.flip(-1))
        assert flipped or torch.equal(image, plain_image)
        assert flipped == (np.random.default_rng([0, epoch, 1]).random() < 0.5)
        seen.add(flipped)
        masks = plain["masks"].flip(-1) if flipped else plain["masks"]
        assert torch.equal(target["masks"], masks)
        np.testing.assert_array_equal(target["boxes"].numpy(), mask_boxes(masks.numpy().astype(bool)))
        again = flip[1]
        assert torch.equal(again[0], image)
    assert seen == {True, False}
    images, targets = collate_detection([ds[0], ds[1]])
    assert len(images) == len(targets) == 2 and targets[1]["name"] == source.ids[1]


def test_default_network_is_torchvisions_and_loads_local_imagenet_weights(tmp_path):
    from torchvision.models import resnet18
    from torchvision.models.detection import maskrcnn_resnet50_fpn
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=21).state_dict()
        with pytest.warns(PretrainedWeightsWarning, match="without pretrained weights"):
            ours = build_maskrcnn(20).state_dict()
    assert list(ours) == list(ref)
    assert all(ours[k].shape == ref[k].shape for k in ref)
    # a torchvision ImageNet checkpoint from a local file (with fc, which the detector has not)
    torch.manual_seed(1)
    imagenet = resnet18()
    state = imagenet.state_dict()
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}  # as older checkpoints
    torch.save(state, tmp_path / "resnet18.pth")
    net = build_maskrcnn(3, "resnet18", tmp_path / "resnet18.pth", fpn_channels=16, box_head_size=32,
                         mask_head_layers=(16,))
    body = net.backbone.body.state_dict()
    for key, value in state.items():
        if not key.startswith("fc."):
            assert torch.equal(body[key], value), key
    # torchvision's freezing with weights: conv1 and layer1 frozen, BatchNorm scale/shift frozen everywhere
    trainable = {k for k, p in net.backbone.body.named_parameters() if p.requires_grad}
    assert trainable == {k for k in trainable if k.startswith(("layer2", "layer3", "layer4")) and ".bn" not in k
                         and "downsample.1" not in k} and "layer2.0.conv1.weight" in trainable
    assert not any(k.startswith(("conv1", "layer1")) for k in trainable)
    net.train()
    assert all(not m.training for m in net.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert net.roi_heads.training
    with pytest.raises(FileNotFoundError, match="backbone weights not found"):
        build_maskrcnn(3, "resnet18", tmp_path / "missing.pth")
    with pytest.raises(RuntimeError, match="do not match resnet34"):
        build_maskrcnn(3, "resnet34", tmp_path / "resnet18.pth")
    with pytest.raises(ValueError, match="backbone expected one of"):
        build_maskrcnn(3, "vgg16")


def small_config(voc, out_dir, **kw):
    base = dict(dataset_root=str(voc), infer_split="train", out_dir=str(out_dir), device="cpu", num_workers=0,
                seed=0, log_interval=1, bn_calibration_batches=1, maskrcnn_backbone="resnet18",
                maskrcnn_fpn_channels=16, maskrcnn_box_head_size=32, maskrcnn_mask_head_layers=(16,),
                maskrcnn_min_size=SIZE[0], maskrcnn_max_size=SIZE[1], maskrcnn_batch_size=4, maskrcnn_num_epochs=2,
                maskrcnn_warmup_iters=2, maskrcnn_box_batch_size=32, maskrcnn_learning_rate=0.01)
    base.update(kw)
    return Config(**base)


def _link_labels(labels, out):
    out.mkdir(parents=True, exist_ok=True)
    os.symlink(labels / "ins_seg", out / "ins_seg")


def _quiet(fn, *args, **kw):
    """One intra-op thread, as each process of the 2-process run has."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PretrainedWeightsWarning)
            return fn(*args, progress=False, **kw)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    voc, labels = data
    out = tmp_path_factory.mktemp("maskrcnn_1proc")
    _link_labels(labels, out)
    cfg = small_config(voc, out)
    return cfg, _quiet(train_ins, cfg)


def test_train_ins_writes_weights_history_and_log(trained):
    cfg, weights = trained
    out = Path(cfg.out_dir)
    assert weights == out / "maskrcnn.pth"
    state = torch.load(weights, weights_only=True)
    assert state["roi_heads.box_predictor.cls_score.weight"].shape == (21, 32)  # 20 VOC classes + background
    history = json.loads((out / "maskrcnn_history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert set(history[0]) == {"epoch", "total", "classifier", "box_reg", "mask", "objectness", "rpn_box_reg"}
    assert history[1]["total"] < history[0]["total"]
    log = (out / "train_ins.log").read_text()
    assert "8 training images" in log and "(4 per process x 1)" in log and "maskrcnn epoch 2/2 done" in log
    assert "BatchNorm statistics of the randomly initialised backbone measured on 1 batches" in log
    ckpt = load_checkpoint(out / "maskrcnn_checkpoint.pt")
    assert ckpt["epoch"] == 2 and ckpt["schedule"]["step"] == ckpt["schedule"]["max_step"] == 4


def test_warmup_then_poly_schedule(trained):
    from irnet_fast.pipeline import PolySchedule, build_sgd
    p = torch.nn.Parameter(torch.zeros(1))
    sched = PolySchedule(build_sgd([([p], 0.02)], 0.0), max_step=10, warmup_steps=4, warmup_factor=0.25)
    lrs = []
    for _ in range(6):
        lrs.append(sched.apply()[0])
        sched.advance()
    warm = [0.25, 0.25 + 0.75 / 4, 0.25 + 0.75 / 2, 0.25 + 0.75 * 3 / 4, 1.0, 1.0]
    assert lrs == pytest.approx([w * 0.02 * (1 - s / 10) ** 0.9 for s, w in enumerate(warm)])
    log = (Path(trained[0].out_dir) / "train_ins.log").read_text()
    assert "step 1: loss" in log and "lr 0.00333" in log  # step 0: 0.01 * 1/3 (the warm-up's start)


def test_resume_is_bit_identical(data, trained, tmp_path):
    voc, labels = data
    cfg_straight, straight = trained
    _link_labels(labels, tmp_path)
    cfg = small_config(voc, tmp_path)
    first = _quiet(train_ins, cfg, stop_after=1)
    assert first == tmp_path / "maskrcnn_checkpoint.pt" and not (tmp_path / "maskrcnn.pth").exists()
    resumed = _quiet(train_ins, cfg, resume=True)
    a, b = torch.load(straight, weights_only=True), torch.load(resumed, weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert json.loads((tmp_path / "maskrcnn_history.json").read_text()) == \
        json.loads((Path(cfg_straight.out_dir) / "maskrcnn_history.json").read_text())


def test_eval_ins_on_the_held_out_split(data, trained, monkeypatch):
    """The evaluation's plumbing against known answers: a network that returns the ground truth
    scores 100 (VOC AP and COCOeval); the trained one writes the same keys in range."""
    voc, _ = data
    cfg, _ = trained
    result = eval_ins(cfg)
    assert json.loads((Path(cfg.out_dir) / "eval_ins.json").read_text()) == result
    assert result["split"] == "val" and result["images"] == 4
    assert 0 <= result["map70"] <= result["map50"] <= 100
    import importlib
    module = importlib.import_module("irnet_fast.pipeline.train_ins")
    val = VOC12(voc, "val")

    def oracle(model, image, device="cpu", mask_threshold=0.5):
        name = next(n for n in val.ids if np.array_equal(val.load_image(n), image))
        masks, classes = val.instance_label(name)
        return {"score": np.linspace(1, 0.5, len(classes)).astype(np.float32), "mask": masks, "class": classes}
    monkeypatch.setattr(module, "predict_instances", oracle)
    perfect = eval_ins(cfg)
    assert perfect["map50"] == perfect["map70"] == 100.0
    if "coco" in result:
        assert 0 <= result["coco"]["AP"] <= 100
        assert perfect["coco"]["AP"] == pytest.approx(100.0) and perfect["coco"]["AP50"] == pytest.approx(100.0)
    else:
        assert "coco" not in perfect


def test_eval_ins_refuses_training_images(data, trained):
    voc, _ = data
    cfg, _ = trained
    with pytest.raises(InputValueError, match="held-out split 'train' is the training split"):
        eval_ins(cfg.override(heldout_split="train"))
    with pytest.raises(InputValueError, match="train_ins: the held-out split 'train' is the training split"):
        train_ins(cfg.override(heldout_split="train"), progress=False)
    with pytest.raises(InputValueError, match="share 8 images with the training split"):
        eval_ins(cfg.override(heldout_split="trainval"))
    with pytest.raises(InputValueError, match="needs heldout_dataset_root and heldout_coco_ann_file"):
        eval_ins(cfg.override(dataset="coco", coco_ann_file="x.json"))
    with pytest.raises(InputValueError, match="is coco_ann_file"):
        eval_ins(cfg.override(dataset="coco", coco_ann_file="x.json", heldout_coco_ann_file="x.json"))
    with pytest.raises(InputValueError, match="do not fit the network of this config"):
        eval_ins(cfg.override(maskrcnn_box_head_size=64))


def test_train_ins_needs_the_pseudo_labels(data, tmp_path):
    voc, _ = data
    with pytest.raises(FileNotFoundError, match="8 of 8 input files missing.*run make_ins_seg first"):
        train_ins(small_config(voc, tmp_path), progress=False)


DDP_SCRIPT = """
import json, sys, warnings
warnings.simplefilter("ignore")
from irnet_fast.pipeline import Config, train_ins
cfg = Config.from_dict(json.loads(sys.argv[1]))
train_ins(cfg, progress=False, stop_after=1)
train_ins(cfg, progress=False, resume=True)
"""


def test_two_process_ddp(data, trained, tmp_path):
    """torchrun with 2 gloo processes, interrupted after an epoch and resumed: a finished network
    close to the one-process run (the samplers draw per process, so not the same numbers)."""
    voc, labels = data
    _link_labels(labels, tmp_path / "ddp")
    cfg = trained[0].override(out_dir=str(tmp_path / "ddp"))
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           json.dumps(cfg.to_dict())]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "ddp"
    log = (out / "train_ins.log").read_text()
    assert "(2 per process x 2)" in log and "resumed from" in log
    history = json.loads((out / "maskrcnn_history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    one = json.loads((Path(trained[0].out_dir) / "maskrcnn_history.json").read_text())
    assert history[0]["total"] == pytest.approx(one[0]["total"], rel=0.2)
    a = torch.load(trained[1], weights_only=True)
    b = torch.load(out / "maskrcnn.pth", weights_only=True)
    assert a.keys() == b.keys() and all(torch.isfinite(v).all() for v in b.values() if v.is_floating_point())


def test_a_diverging_training_stops_with_a_clear_error(data, tmp_path):
    voc, labels = data
    _link_labels(labels, tmp_path)
    cfg = small_config(voc, tmp_path, maskrcnn_learning_rate=1e30, maskrcnn_warmup_iters=0, maskrcnn_num_epochs=1)
    with pytest.raises(RuntimeError, match=r"maskrcnn: the loss is not finite at epoch 1 iteration \d"):
        _quiet(train_ins, cfg)
    assert not (tmp_path / "maskrcnn.pth").exists()


def test_backbone_from_the_cam_network_or_the_shared_weights_file(tmp_path):
    import importlib
    from irnet_fast.models import CAMNet
    from irnet_fast.pipeline.train_irn import load_cam_backbone
    module = importlib.import_module("irnet_fast.pipeline.train_ins")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PretrainedWeightsWarning)
        torch.manual_seed(2)
        cam = CAMNet("resnet18", 20)
        net = build_maskrcnn(20, "resnet18", fpn_channels=16, box_head_size=32, mask_head_layers=(16,))
        other = build_maskrcnn(20, "resnet34", fpn_channels=16, box_head_size=32, mask_head_layers=(16,))
    torch.save(cam.state_dict(), tmp_path / "cam.pth")
    load_cam_backbone(net.backbone.body, tmp_path / "cam.pth", "maskrcnn_init_from_cam")
    body = net.backbone.body.state_dict()
    for key, value in cam.backbone.state_dict().items():  # layer4's stride differs, its weights do not
        assert torch.equal(body[key], value), key
    with pytest.raises(RuntimeError, match="maskrcnn_init_from_cam: the CAM weights .* do not fit the backbone"):
        load_cam_backbone(other.backbone.body, tmp_path / "cam.pth", "maskrcnn_init_from_cam")
    # maskrcnn_backbone_weights, else --backbone-weights when it is the same ResNet
    assert module._backbone_weights(Config(backbone_weights="r50.pth")) == "r50.pth"
    assert module._backbone_weights(Config(backbone_weights="r50.pth", maskrcnn_backbone="resnet18")) is None
    assert module._backbone_weights(Config(backbone_weights="r50.pth", maskrcnn_backbone_weights="m.pth")) == "m.pth"
