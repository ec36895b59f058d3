"""Tests of irnet_fast.visualize: the colour maps, the panel layout, render_panels on a tiny fake
output folder and the Markdown report."""
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from irnet_fast import visualize as vis
from irnet_fast._io import save_label_png, save_npz, voc_palette
from irnet_fast.data import generate_synthetic
from irnet_fast.pipeline import Config
from irnet_fast.pipeline.panels import render_panels


def _rgb(arr, shape):
    assert arr.dtype == np.uint8
    assert arr.shape == tuple(shape) + (3,)


@pytest.mark.parametrize("hw", [(1, 1), (5, 7)])
def test_colorize_labels(hw):
    rng = np.random.default_rng(0)
    label = rng.integers(0, 21, hw).astype(np.uint8)
    label.flat[0] = 255
    out = vis.colorize_labels(label)
    _rgb(out, hw)
    pal = np.asarray(voc_palette(), np.uint8).reshape(256, 3)
    assert tuple(out[0, 0]) == tuple(pal[255]) == (224, 224, 192)
    if hw != (1, 1):
        i, j = 1, 1
        assert tuple(out[i, j]) == tuple(pal[label[i, j]])
    with pytest.raises(ValueError):
        vis.colorize_labels(np.zeros((2, 2, 2), np.uint8))


@pytest.mark.parametrize("hw,k", [((1, 1), 1), ((6, 9), 3), ((6, 9), 0), ((1, 1), 0)])
def test_overlay_cam(hw, k):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, hw + (3,), dtype=np.uint8)
    high = rng.random((k,) + hw).astype(np.float32)
    out = vis.overlay_cam(image, high, np.arange(k))
    _rgb(out, hw)
    if k == 0:
        assert np.all(out <= image)  # dimmed
        assert np.array_equal(out, (image * 0.5).round().astype(np.uint8))


def test_overlay_cam_resizes_and_checks_keys():
    image = np.zeros((8, 12, 3), np.uint8)
    out = vis.overlay_cam(image, np.ones((2, 2, 3), np.float32))
    _rgb(out, (8, 12))
    with pytest.raises(ValueError):
        vis.overlay_cam(image, np.ones((2, 8, 12), np.float32), [0])


def test_jet_ends():
    ramp = vis.jet(np.array([0.0, 0.5, 1.0, np.nan, 7.0]))
    assert ramp.shape == (5, 3) and ramp.dtype == np.uint8
    assert ramp[0, 2] > ramp[0, 0]  # low: blue
    assert ramp[2, 0] > ramp[2, 2]  # high: red
    assert np.array_equal(ramp[3], ramp[0]) and np.array_equal(ramp[4], ramp[2])


@pytest.mark.parametrize("shape", [(1, 1), (1, 1, 1), (4, 5), (1, 4, 5)])
def test_colorize_boundary(shape):
    b = np.random.default_rng(2).random(shape).astype(np.float32)
    out = vis.colorize_boundary(b)
    _rgb(out, shape[-2:])
    dark = vis.colorize_boundary(np.ones((2, 2)))
    light = vis.colorize_boundary(np.zeros((2, 2)))
    assert dark.max() == 0 and light.min() == 255


@pytest.mark.parametrize("hw", [(1, 1), (5, 8)])
def test_colorize_displacement_shapes(hw):
    d = np.random.default_rng(3).normal(size=(2,) + hw).astype(np.float32)
    _rgb(vis.colorize_displacement(d), hw)
    zero = vis.colorize_displacement(np.zeros((2,) + hw, np.float32))
    assert zero.max() == 0
    with pytest.raises(ValueError):
        vis.colorize_displacement(np.zeros((3,) + hw))


def test_colorize_displacement_direction_hue():
    d = np.zeros((2, 1, 4), np.float32)
    d[1, 0, 0], d[1, 0, 1] = 1.0, -1.0   # +x, -x
    d[0, 0, 2], d[0, 0, 3] = 1.0, -1.0   # +y, -y
    out = vis.colorize_displacement(d).astype(int)[0]
    assert not np.array_equal(out[0], out[1])
    assert not np.array_equal(out[2], out[3])
    assert len({tuple(c) for c in out}) == 4
    # same magnitude: same brightness (max channel)
    assert len({c.max() for c in out}) == 1
    # half the magnitude is darker
    d2 = d.copy()
    d2[1, 0, 0] = 0.5
    half = vis.colorize_displacement(d2).astype(int)[0, 0]
    assert half.max() < out[0].max()


@pytest.mark.parametrize("p,hw", [(0, (1, 1)), (0, (4, 6)), (1, (1, 1)), (3, (4, 6))])
def test_colorize_instances_shapes(p, hw):
    rng = np.random.default_rng(4)
    masks = rng.random((p,) + hw) > 0.5
    scores = rng.random(p).astype(np.float32)
    _rgb(vis.colorize_instances(masks, scores), hw)
    image = rng.integers(0, 256, hw + (3,), dtype=np.uint8)
    _rgb(vis.colorize_instances(masks, scores, image), hw)
    if p == 0:
        assert vis.colorize_instances(masks, scores).max() == 0  # all unlabeled: dark


def test_colorize_instances_order_and_colors():
    masks = np.zeros((3, 2, 3), bool)
    masks[:, 0, :] = True        # all three overlap on row 0
    masks[2, 1, 0] = True
    scores = np.array([0.5, 0.9, 0.0], np.float32)
    out = vis.colorize_instances(masks, scores)
    colors = vis.instance_colors(3)
    assert np.array_equal(out[0, 0], colors[1])       # best score on top
    assert np.array_equal(out[1, 0], [0, 0, 0])       # score 0: not drawn
    assert np.array_equal(out[1, 1], [0, 0, 0])       # unlabeled: dark
    c = vis.instance_colors(8).astype(int)
    assert len({tuple(x) for x in c}) == 8
    assert np.array_equal(vis.instance_colors(8), c)  # deterministic


def test_hsv_to_rgb_primaries():
    rgb = vis.hsv_to_rgb(np.array([0.0, 1 / 3, 2 / 3]), 1.0, 1.0)
    assert np.array_equal(rgb, [[255, 0, 0], [0, 255, 0], [0, 0, 255]])


def test_panel_arithmetic():
    tiles = [("a", np.zeros((10, 20, 3), np.uint8)), ("b", np.zeros((20, 10, 3), np.uint8)),
             ("a very long title that does not fit", np.zeros((1, 1), np.uint8))]
    out = vis.panel(tiles, margin=3, title_height=12)
    # height = tallest tile (20); widths 40, 10, 20
    assert out.dtype == np.uint8
    assert out.shape == (20 + 12 + 2 * 3, 40 + 10 + 20 + 4 * 3, 3)
    out = vis.panel(tiles, height=8, margin=2, title_height=10)
    assert out.shape == (8 + 10 + 4, 16 + 4 + 8 + 4 * 2, 3)
    single = vis.panel([("x", np.full((5, 5, 3), 7, np.uint8))], margin=0, title_height=0)
    assert single.shape == (5, 5, 3) and single.max() == 7
    with pytest.raises(ValueError):
        vis.panel([])


def _fake_out(tmp_path):
    root = generate_synthetic(tmp_path / "data", num_train=2, num_val=0, size=(32, 48))
    out = tmp_path / "out"
    cfg = Config(dataset_root=str(root), out_dir=str(out), infer_split="train")
    from irnet_fast.pipeline.common import infer_source
    source = infer_source(cfg)
    names = list(source.ids)
    rng = np.random.default_rng(5)
    h, w = 32, 48
    a, b = names[0], names[1]
    # first image: every stage; second: CAM only with K = 0 (the rest missing)
    save_npz(out / "cam" / f"{a}.npz", {"keys": np.array([0, 2], np.int64),
                                        "cam": rng.random((2, 8, 12)).astype(np.float32),
                                        "high_res": rng.random((2, h, w)).astype(np.float32)})
    save_npz(out / "cam" / f"{b}.npz", {"keys": np.zeros(0, np.int64), "cam": np.zeros((0, 8, 12), np.float32),
                                        "high_res": np.zeros((0, h, w), np.float32)})
    ir = rng.integers(0, 4, (h, w)).astype(np.uint8)
    ir[:4] = 255
    save_label_png(out / "ir_label" / f"{a}.png", ir)
    save_label_png(out / "sem_seg" / f"{a}.png", rng.integers(0, 4, (h, w)).astype(np.uint8))
    save_npz(out / "ins_seg" / f"{a}.npz", {"score": np.array([0.3, 0.8], np.float32),
                                            "label": rng.integers(0, 3, (h, w)).astype(np.int32),
                                            "class": np.array([0, 2], np.int64)}, compress=True)
    return cfg, source, names


def test_render_panels_fake_out(tmp_path):
    cfg, source, names = _fake_out(tmp_path)
    assert not (Path(cfg.out_dir) / "irn.pth").exists()
    tiles = vis.panel_tiles(cfg, source, names[0])
    titles = [t for t, _ in tiles]
    assert len(tiles) == len(vis.TILE_TITLES)
    assert titles[:3] == ["input", "CAM", "IR label"]
    assert titles[3] == "boundary (missing)" and titles[4] == "displacement (missing)"
    assert titles[5:] == ["semantic", "instances", "GT semantic", "GT instances"]
    for _, rgb in tiles:
        _rgb(rgb, (32, 48))
    assert np.all(tiles[3][1] == vis.MISSING_GREY)
    tiles_b = vis.panel_tiles(cfg, source, names[1])
    assert [t for t, _ in tiles_b][1] == "CAM"   # K = 0 still drawn
    assert [t.endswith("(missing)") for t, _ in tiles_b] == [False, False] + [True] * 5 + [False, False]

    panels = tmp_path / "report" / "panels"
    paths = render_panels(cfg, names, panels, device="cpu")
    assert [p.name for p in paths] == [f"{n}.png" for n in names]
    for p in paths:
        with Image.open(p) as im:
            im.load()
            assert im.mode == "RGB"
            n = len(vis.TILE_TITLES)
            assert im.size == (n * 48 + (n + 1) * 4, 32 + 16 + 2 * 4)
    assert not list(panels.glob(".*tmp*"))  # no leftover temp files


def test_held_out_panels_show_the_final_prediction_beside_the_truth(tmp_path):
    cfg, source, names = _fake_out(tmp_path)
    pred = np.zeros((32, 48), np.uint8)
    pred[:, 24:] = 3
    save_label_png(Path(cfg.out_dir) / "sem_pred" / f"{names[0]}.png", pred)
    tiles = dict(vis.panel_tiles(cfg, source, names[0], titles=vis.VAL_TILE_TITLES))
    assert list(tiles) == ["input", "DeepLab", "GT semantic"]
    np.testing.assert_array_equal(tiles["DeepLab"], vis.colorize_labels(pred))
    assert [t for t, _ in vis.panel_tiles(cfg, source, names[1], titles=vis.VAL_TILE_TITLES)][1] == "DeepLab (missing)"
    with pytest.raises(ValueError, match="titles must start with 'input'"):
        vis.panel_tiles(cfg, source, names[0], titles=("input", "painting"))
    paths = render_panels(cfg, names[:1], tmp_path / "val", source=source, titles=vis.VAL_TILE_TITLES)
    with Image.open(paths[0]) as im:
        assert im.size == (3 * 48 + 4 * 4, 32 + 16 + 2 * 4)
    text = vis.write_report(tmp_path / "r", {}, [], val_panel_paths=paths).read_text()
    assert "## Held-out images" in text and text.count(vis.VAL_TILE_LEGEND) == 1


def test_write_report(tmp_path):
    out = tmp_path / "demo"
    panels = []
    for name in ("img_a", "img_b"):
        p = out / "panels" / f"{name}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(p)
        panels.append(p)
    summary = {"cam_miou": 48.123, "ir_label_precision": 85.5, "ir_label_coverage": float("nan"),
               "sem_miou": 59.75, "ins_map50": None, "seconds": {"make_cam": 12.5, "train_irn": 30.25},
               "images": 8, "device": "cpu", "nested": {"skip": 1}}
    report = vis.write_report(out, summary, panels, title="my demo")
    assert report == out / "report.md"
    text = report.read_text()
    assert text.startswith("# my demo")
    for value in ("48.1", "85.5", "59.8", "12.5", "30.2", "42.8"):  # 30.25 rounds to even
        assert value in text, value
    assert re.search(r"IR label coverage \| n/a", text)
    assert re.search(r"instance mAP@0.5 \| n/a", text)
    assert re.search(r"instance mAP@0.7 \| n/a", text)  # absent
    assert "| images | 8 |" in text and "| device | cpu |" in text
    assert "nested" not in text
    links = re.findall(r"!\[([^\]]*)\]\(([^)]+)\)", text)
    assert [l[0] for l in links] == ["img_a", "img_b"]
    for _, target in links:
        assert not Path(target).is_absolute()
        assert target == f"panels/{Path(target).name}"
        assert (out / target).is_file()
    assert text.count(vis.TILE_LEGEND) == 2


def test_write_report_relative_elsewhere_and_total(tmp_path):
    out = tmp_path / "a" / "report"
    p = tmp_path / "b" / "x.png"
    p.parent.mkdir(parents=True)
    Image.new("RGB", (2, 2)).save(p)
    text = vis.write_report(out, {"seconds": {"s1": 1.0, "total": 5.0}}, [p]).read_text()
    assert "](../../b/x.png)" in text
    assert (out / "../../b/x.png").resolve().is_file()
    assert "**5.0**" in text
    assert text.count("n/a") == len(vis.METRICS)
