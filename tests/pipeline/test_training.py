"""Pipeline training steps: config, poly schedule, CAM / IRNet training, resume, 2-process DDP.

Everything runs on the CPU on a tiny synthetic VOC-layout dataset with ResNet-18.
"""
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import default_collate

from irnet_fast.data import VOC12, generate_synthetic
from irnet_fast.data.transforms import AffinityTransform
from irnet_fast.data.voc import AffinityDataset
from irnet_fast.models import IRNet, PretrainedWeightsWarning, irn_loss
from irnet_fast.pipeline import (Config, ConfigError, PolySchedule, build_sgd, load_checkpoint, poly_lr,
                                 train_cam, train_irn)

REPO = Path(__file__).resolve().parents[2]


# --- config -----------------------------------------------------------------------------------

def test_config_defaults_are_the_papers():
    cfg = Config()
    assert (cfg.cam_batch_size, cfg.cam_num_epochs, cfg.cam_learning_rate, cfg.cam_head_lr_mult) == (16, 5, 0.1, 10.0)
    assert (cfg.cam_weight_decay, cfg.cam_crop_size, cfg.cam_resize_long) == (1e-4, 512, (320, 640))
    assert (cfg.irn_batch_size, cfg.irn_num_epochs, cfg.irn_learning_rate, cfg.irn_dp_lr_mult) == (32, 3, 0.1, 10.0)
    assert (cfg.irn_crop_size, cfg.irn_rescale, cfg.radius, cfg.irn_weight_decay) == (512, (0.5, 1.5), 10, 1e-4)
    assert (cfg.poly_power, cfg.momentum) == (0.9, 0.9)
    assert (cfg.sem_seg_bg_thres, cfg.ins_seg_bg_thres, cfg.conf_fg_thres, cfg.conf_bg_thres) == (0.25, 0.25, 0.30, 0.05)
    assert (cfg.beta, cfg.exp_times, cfg.cam_scales) == (10.0, 8, (1.0, 0.5, 1.5, 2.0))
    assert cfg.backbone == "resnet50" and cfg.backbone_weights is None
    assert cfg.cam_train_bn_affine and cfg.irn_pad_to == 512  # the reference's
    assert Config.from_dict(cfg.to_dict()) == cfg
    json.dumps(cfg.to_dict())


def test_config_overrides():
    cfg = Config()
    new = cfg.override({"cam.batch_size": "8", "irn": {"rescale": [0.75, 1.25]}, "backbone_weights": "none",
                        "cam_scales": "[1.0, 0.5]", "device": "cpu", "momentum": "1e-4"}, seed=3, beta=7)
    assert cfg.cam_batch_size == 16 and cfg.seed == 0  # unchanged
    assert new.cam_batch_size == 8 and new.irn_rescale == (0.75, 1.25) and new.backbone_weights is None
    assert new.cam_scales == (1.0, 0.5) and new.device == "cpu" and new.momentum == 1e-4
    assert new.seed == 3 and new.beta == 7.0 and isinstance(new.beta, float)
    assert cfg.override({"backbone_weights": "/x/w.pth"}).backbone_weights == "/x/w.pth"
    assert Config.parse_cli(["cam.batch_size=8", "out_dir=/tmp/a=b"]) == {"cam.batch_size": "8", "out_dir": "/tmp/a=b"}

    with pytest.raises(ConfigError, match="unknown config key 'cam_batchsize'.*cam_batch_size"):
        cfg.override(cam_batchsize=8)
    with pytest.raises(ConfigError, match="unknown config key 'cam.lr'"):
        cfg.override({"cam.lr": "0.1"})
    with pytest.raises(ConfigError, match="'cam_batch_size': expected int"):
        cfg.override({"cam.batch_size": "eight"})
    with pytest.raises(ConfigError, match="'cam_batch_size': expected int"):
        cfg.override(cam_batch_size=2.5)
    with pytest.raises(ConfigError, match="'cam_train_bn_affine': expected bool"):
        cfg.override(cam_train_bn_affine=1)
    with pytest.raises(ConfigError, match="'irn_rescale': expected 2 values"):
        cfg.override(irn_rescale=[0.5])
    with pytest.raises(ConfigError, match="'dataset_root': expected str"):
        cfg.override(dataset_root=None)
    with pytest.raises(ConfigError):
        Config(cam_batch_size="16")


def test_config_from_toml(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(textwrap.dedent("""
        backbone = "resnet18"
        seed = 5
        [cam]
        batch_size = 4
        resize_long = [64, 96]
        [irn]
        learning_rate = 0.05
    """))
    cfg = Config.from_toml(path, overrides={"seed": "6"})
    assert (cfg.backbone, cfg.seed, cfg.cam_batch_size, cfg.cam_resize_long, cfg.irn_learning_rate) == \
        ("resnet18", 6, 4, (64, 96), 0.05)
    assert cfg.irn_batch_size == 32
    bad = tmp_path / "bad.toml"
    bad.write_text("[cam]\nbatchsize = 4\n")
    with pytest.raises(ConfigError, match=r"bad\.toml.*unknown config key 'cam\.batchsize'"):
        Config.from_toml(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("seed = \n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        Config.from_toml(broken)
    with pytest.raises(FileNotFoundError, match="missing.toml"):
        Config.from_toml(tmp_path / "missing.toml")


# --- schedule ---------------------------------------------------------------------------------

def test_poly_lr_values():
    assert poly_lr(0.1, 0, 100) == pytest.approx(0.1)
    assert poly_lr(0.1, 50, 100) == pytest.approx(0.1 * 0.5 ** 0.9)
    assert poly_lr(1.0, 99, 100) == pytest.approx(0.01 ** 0.9)
    assert poly_lr(1.0, 100, 100) == 0.0
    assert poly_lr(2.0, 3, 10, power=1.0) == pytest.approx(1.4)

    a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
    opt = build_sgd([([a], 0.1), ([b], 1.0)], weight_decay=1e-4, momentum=0.9)
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-4, 1e-4]
    assert opt.defaults["momentum"] == 0.9
    sched = PolySchedule(opt, max_step=10)
    seen = []
    for _ in range(10):
        seen.append(sched.apply())
        sched.advance()
    for step, (lr_a, lr_b) in enumerate(seen):
        factor = (1 - step / 10) ** 0.9
        assert lr_a == pytest.approx(0.1 * factor) and lr_b == pytest.approx(1.0 * factor)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1 * 0.1 ** 0.9, 0.1 ** 0.9])


# --- training ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """8 training images of 64 x 80 and their IR labels (GT with 10% of pixels set to 255)."""
    root = tmp_path_factory.mktemp("pipeline")
    voc = generate_synthetic(root / "voc", num_train=8, num_val=2, size=(64, 80), num_classes=3, seed=0)
    labels = root / "ir_labels"
    labels.mkdir()
    rng = np.random.default_rng(0)
    for name in VOC12(voc, "train").ids:
        seg = VOC12(voc, "train").seg_label(name).copy()
        seg[rng.random(seg.shape) < 0.1] = 255
        Image.fromarray(seg).save(labels / f"{name}.png")
    return root, voc, labels


def small_config(voc, out_dir, **kw):
    base = dict(dataset_root=str(voc), cam_split="train", irn_split="train", mean_shift_split="train",
                out_dir=str(out_dir), backbone="resnet18", num_workers=0, device="cpu", seed=0,
                cam_batch_size=4, cam_num_epochs=2, cam_crop_size=64, cam_resize_long=(64, 80),
                irn_batch_size=4, irn_num_epochs=2, irn_crop_size=80, irn_rescale=(0.9, 1.1), log_interval=1)
    base.update(kw)
    return Config(**base)


def _quiet(fn, *args, **kw):
    """Runs a training step on one intra-op thread, as each process of the 2-process run does:
    CPU kernels sum in a thread-count dependent order, and IRNet's L1 displacement loss turns
    rounding differences into visible ones within a few steps (2 vs 1 threads: ~3e-3 after 6
    steps; 2 processes vs 1 process at equal threads: ~1e-7)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PretrainedWeightsWarning)
            return fn(*args, progress=False, **kw)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cam_run(data):
    root, voc, _ = data
    cfg = small_config(voc, root / "cam_1proc")
    return cfg, _quiet(train_cam, cfg)


@pytest.fixture(scope="module")
def irn_run(data):
    root, voc, labels = data
    cfg = small_config(voc, root / "irn_1proc", irn_num_epochs=10, irn_learning_rate=0.02)
    return cfg, _quiet(train_irn, cfg, labels)


def test_cam_training_lowers_the_loss(cam_run):
    cfg, weights = cam_run
    out = Path(cfg.out_dir)
    assert weights == out / "cam.pth" and weights.is_file()
    state = torch.load(weights, weights_only=True)
    assert state["classifier.weight"].shape == (20, 512, 1, 1)
    history = json.loads((out / "cam_history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[-1]["total"] < history[0]["total"]
    log = (out / "train_cam.log").read_text()
    assert "cam epoch 2/2 done" in log and "lrs [0.1, 1.0]" in log
    ckpt = load_checkpoint(out / "cam_checkpoint.pt")
    assert ckpt["epoch"] == 2 and ckpt["schedule"]["step"] == ckpt["schedule"]["max_step"] == 4
    assert set(ckpt["rng"]) >= {"torch", "numpy", "python"}
    assert not list(out.glob(".*tmp*"))


def _irn_losses(model, batch):
    model.train()
    labels = [batch[k] for k in ("aff_bg_pos_label", "aff_fg_pos_label", "aff_neg_label")]
    with torch.no_grad():
        edge, disp = model(batch["img"])
        return {k: v.item() for k, v in irn_loss(edge, disp, labels, radius=10).items()}


def test_irn_training_lowers_the_loss_and_sets_mean_shift(data, irn_run):
    _, voc, labels = data
    cfg, weights = irn_run
    out = Path(cfg.out_dir)
    assert weights == out / "irn.pth"
    history = json.loads((out / "irn_history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, cfg.irn_num_epochs + 1))
    assert set(history[0]) >= {"total", "pos_aff", "neg_aff", "dp_fg", "dp_bg"}
    state = torch.load(weights, weights_only=True)
    shift = state["mean_shift.running_mean"]
    assert shift.shape == (2,) and torch.isfinite(shift).all() and shift.abs().sum() > 0
    assert "mean shift" in (out / "train_irn.log").read_text()
    # the checkpoint holds the trained model before the mean shift; the final file differs only there
    ckpt = load_checkpoint(out / "irn_checkpoint.pt")
    for key, value in ckpt["model"].items():
        if key != "mean_shift.running_mean":
            assert torch.equal(value, state[key]), key

    # loss on a fixed batch (all 8 images, epoch-0 augmentation): initial vs trained network.
    # train_irn seeds torch with cfg.seed right before building the model: rebuild the initial one
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PretrainedWeightsWarning)
        torch.manual_seed(cfg.seed)
        initial = IRNet(cfg.backbone)
        trained = IRNet(cfg.backbone)
    trained.load_state_dict(state)
    for key, value in initial.backbone.state_dict().items():  # frozen: the rebuild is the same network
        assert torch.equal(value, trained.backbone.state_dict()[key]), key
    dataset = AffinityDataset(VOC12(voc, "train"), labels, crop_size=cfg.irn_crop_size, radius=cfg.radius,
                              transform=AffinityTransform(rescale=cfg.irn_rescale, crop_size=cfg.irn_crop_size))
    batch = default_collate([dataset[i] for i in range(len(dataset))])
    before, after = _irn_losses(initial, batch), _irn_losses(trained, batch)
    assert after["total"] < before["total"]
    # the positive affinity term and the foreground displacement fall; the background displacement
    # term starts near 0 (a fresh network predicts tiny displacements) and may rise as dp_fg is
    # learnt; in these few epochs on the part-style data (IR labels that leave most of each body
    # unlabelled) the negative term may rise too
    for key in ("pos_aff", "dp_fg"):
        assert after[key] < before[key], (key, before, after)


def test_resume_is_bit_identical(data, cam_run):
    root, voc, _ = data
    cfg_straight, straight = cam_run
    cfg = small_config(voc, root / "cam_resumed")
    first = _quiet(train_cam, cfg, stop_after=1)
    assert first == Path(cfg.out_dir) / "cam_checkpoint.pt"
    assert load_checkpoint(first)["epoch"] == 1 and not (Path(cfg.out_dir) / "cam.pth").exists()
    resumed = _quiet(train_cam, cfg, resume=True)
    a = torch.load(straight, weights_only=True)
    b = torch.load(resumed, weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    hist_a = json.loads((Path(cfg_straight.out_dir) / "cam_history.json").read_text())
    hist_b = json.loads((Path(cfg.out_dir) / "cam_history.json").read_text())
    assert hist_a == hist_b


def test_batch_not_divisible_by_processes_is_an_error():
    from irnet_fast.pipeline.distributed import per_process_batch
    assert per_process_batch(32, 4) == 8
    with pytest.raises(ValueError, match="not divisible by the number of processes 3"):
        per_process_batch(16, 3)


DDP_SCRIPT = """
import sys, warnings
warnings.simplefilter("ignore")
from irnet_fast.pipeline import Config, train_cam, train_irn
import json
# each training is interrupted after some epochs and resumed from its checkpoint: multi-process
# resume must land where the uninterrupted one-process run does
cam_cfg, irn_cfg = Config.from_dict(json.loads(sys.argv[1])), Config.from_dict(json.loads(sys.argv[2]))
train_cam(cam_cfg, progress=False, stop_after=1)
train_cam(cam_cfg, progress=False, resume=True)
train_irn(irn_cfg, sys.argv[3], progress=False, stop_after=4)
train_irn(irn_cfg, sys.argv[3], progress=False, resume=True)
"""


def test_two_process_ddp_matches_one_process(data, cam_run, irn_run, tmp_path):
    root, voc, labels = data
    out = tmp_path / "ddp"
    cam_cfg, irn_cfg = cam_run[0].override(out_dir=str(out)), irn_run[0].override(out_dir=str(out))
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), json.dumps(cam_cfg.to_dict()), json.dumps(irn_cfg.to_dict()), str(labels)]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for log in ("train_cam.log", "train_irn.log"):
        assert "(2 per process x 2)" in (out / log).read_text()
    for name, (_, one) in (("cam.pth", cam_run), ("irn.pth", irn_run)):
        a = torch.load(one, weights_only=True)
        b = torch.load(out / name, weights_only=True)
        for key in a:
            # the mean shift is measured with the trained network: its weights' 1e-5 differences
            # (reduction order) reach the averaged field amplified (measured: 2.2e-5 on 0.214)
            tol = 1e-4 if key == "mean_shift.running_mean" else 1e-5
            assert torch.allclose(a[key], b[key], rtol=tol, atol=tol), (name, key, (a[key] - b[key]).abs().max())
    for name in ("cam_history.json", "irn_history.json"):
        h1 = json.loads((Path(cam_run[0].out_dir if name.startswith("cam") else irn_run[0].out_dir) / name).read_text())
        h2 = json.loads((out / name).read_text())
        for e1, e2 in zip(h1, h2):
            for key in e1:
                assert e1[key] == pytest.approx(e2[key], rel=1e-4, abs=1e-5), (name, key)
