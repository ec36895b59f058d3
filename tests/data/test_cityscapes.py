"""The Cityscapes reader on hand-made files of the official layout, and the synthetic generator."""
import json

import numpy as np
import pytest
from PIL import Image

from irnet_fast.data import cityscapes as cs
from irnet_fast.data.cityscapes import Cityscapes, image_labels, write_labels_file
from irnet_fast.data.synthetic_cityscapes import generate
from irnet_fast.errors import InputError

# label ids 7 road, 8 sidewalk, 9 parking (ignored), 23 sky, 24 person, 26 car, 29 caravan (ignored), 0 unlabeled
LABEL_A = np.array([[23, 23, 23, 23, 23, 23],
                    [23, 26, 26, 24, 9, 9],
                    [7, 26, 26, 24, 29, 29],
                    [7, 7, 7, 0, 0, 8]], np.uint8)
INST_A = np.array([[23, 23, 23, 23, 23, 23],
                   [23, 26001, 26001, 24, 9, 9],      # 24 alone: a group of persons
                   [7, 26001, 26000, 24, 29000, 29000],
                   [7, 7, 7, 0, 0, 8]], np.int32)
LABEL_B = np.full((4, 6), 7, np.uint8)
LABEL_B[0, :2] = 8


def _write(root, split, city, stem, labels, inst):
    img_dir = root / "leftImg8bit" / split / city
    gt_dir = root / "gtFine" / split / city
    img_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(labels.shape + (3,), 100, np.uint8)).save(img_dir / f"{stem}_leftImg8bit.png")
    Image.fromarray(labels).save(gt_dir / f"{stem}_gtFine_labelIds.png")
    Image.fromarray(inst.astype(np.uint16)).save(gt_dir / f"{stem}_gtFine_instanceIds.png")


@pytest.fixture
def root(tmp_path):
    _write(tmp_path, "train", "zurich", "zurich_000001_000019", LABEL_A, INST_A)
    _write(tmp_path, "train", "aachen", "aachen_000000_000019", LABEL_B, LABEL_B.astype(np.int32))
    _write(tmp_path, "val", "lindau", "lindau_000000_000019", LABEL_B, LABEL_B.astype(np.int32))
    return tmp_path


def test_label_table_and_classes():
    assert cs.NUM_CITYSCAPES_CLASSES == 19
    assert cs.TRAIN_CLASSES[:3] == ("road", "sidewalk", "building") and cs.TRAIN_CLASSES[-1] == "bicycle"
    assert cs.INSTANCE_TRAIN_IDS == tuple(range(11, 19))
    assert [cs.TRAIN_CLASSES[i] for i in cs.INSTANCE_TRAIN_IDS] == [
        "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]
    lut = cs.id_to_train_id(cs.BUILTIN_LABELS)
    assert lut[7] == 0 and lut[26] == 13 and lut[33] == 18
    assert all(lut[i] == 255 for i in (0, 1, 6, 9, 10, 14, 15, 16, 18, 29, 30)) and lut[34:].tolist() == [255] * 222


def test_builtin_table_equals_cityscapesscripts():
    labels = pytest.importorskip("cityscapesscripts.helpers.labels")
    official = [(l.name, l.id, l.trainId, l.category, l.categoryId, l.hasInstances, l.ignoreInEval, tuple(l.color))
                for l in labels.labels]
    assert [tuple(l) for l in cs.BUILTIN_LABELS] == official
    assert "installed" in cs.label_source()


def test_ids_seg_and_instance_labels(root):
    src = Cityscapes(root, "train")
    assert src.ids == ["aachen_000000_000019", "zurich_000001_000019"] and len(src) == 2
    assert src.num_classes == 19 and src.ignore_from == 20 and src.has_background is False
    assert src.image_path("zurich_000001_000019").name == "zurich_000001_000019_leftImg8bit.png"
    assert src.load_image("aachen_000000_000019").shape == (4, 6, 3)
    seg = src.seg_label("zurich_000001_000019")
    # train id + 1: sky 10 -> 11, car 13 -> 14, person 11 -> 12, road 0 -> 1, sidewalk 1 -> 2; ignored -> 255
    expected = np.array([[11, 11, 11, 11, 11, 11],
                         [11, 14, 14, 12, 255, 255],
                         [1, 14, 14, 12, 255, 255],
                         [1, 1, 1, 255, 255, 2]], np.uint8)
    np.testing.assert_array_equal(seg, expected)
    masks, classes = src.instance_label("zurich_000001_000019")
    # the two cars in id order; the person group (24) and the ignored caravan (29000) are left out
    assert classes.tolist() == [13, 13]
    np.testing.assert_array_equal(masks[0], INST_A == 26000)
    np.testing.assert_array_equal(masks[1], INST_A == 26001)
    masks, classes = src.instance_label("aachen_000000_000019")
    assert masks.shape == (0, 4, 6) and classes.shape == (0,)
    np.testing.assert_array_equal(src.instance_ids("zurich_000001_000019"), INST_A)


def test_image_level_labels_threshold(root):
    # zurich: sky 7 px, car 4, person 2, road 4, sidewalk 1 (parking, caravan, unlabeled ignored)
    names = lambda v: [cs.TRAIN_CLASSES[i] for i in np.flatnonzero(v)]
    assert names(Cityscapes(root, "train", min_pixels=1).label("zurich_000001_000019")) == [
        "road", "sidewalk", "sky", "person", "car"]
    assert names(Cityscapes(root, "train", min_pixels=3).label("zurich_000001_000019")) == ["road", "sky", "car"]
    assert names(Cityscapes(root, "train", min_pixels=5).label("zurich_000001_000019")) == ["sky"]
    assert names(image_labels(LABEL_B, 2)) == ["road", "sidewalk"]
    assert names(image_labels(LABEL_B, 3)) == ["road"]


def test_labels_file_written_once_and_masks_not_read_after(root, tmp_path):
    path = tmp_path / "labels" / "train_min3.json"
    src = Cityscapes(root, "train", labels_file=path, min_pixels=3)
    assert json.loads(path.read_text()) == {"aachen_000000_000019": ["road"],
                                            "zurich_000001_000019": ["road", "sky", "car"]}
    for f in (root / "gtFine" / "train").rglob("*.png"):
        f.unlink()  # training reads only the labels file from now on
    again = Cityscapes(root, "train", labels_file=path, min_pixels=3)
    np.testing.assert_array_equal(again.label("zurich_000001_000019"), src.label("zurich_000001_000019"))
    with pytest.raises(FileNotFoundError, match="gtFine"):
        Cityscapes(root, "train").label("zurich_000001_000019")
    write_labels_file(root, "val", tmp_path / "val.json", 1)
    assert json.loads((tmp_path / "val.json").read_text()) == {"lindau_000000_000019": ["road", "sidewalk"]}


def test_bad_inputs(root, tmp_path):
    with pytest.raises(InputError, match="has no leftImg8bit"):
        Cityscapes(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="splits present: train, val"):
        Cityscapes(root, "test")
    with pytest.raises(ValueError, match="min_pixels expected an integer >= 1, got 0"):
        Cityscapes(root, "train", min_pixels=0)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"aachen_000000_000019": ["road"]}))
    with pytest.raises(ValueError, match="no labels for 1 of 2"):
        Cityscapes(root, "train", labels_file=bad)


def test_synthetic_layout(tmp_path):
    root = generate(tmp_path / "d", num_train=6, num_val=2, size=(32, 64), seed=1)
    src = Cityscapes(root, "train", min_pixels=1)
    assert len(src) == 6 and len(Cityscapes(root, "val")) == 2
    seen = set()
    for name in src.ids:
        seg, (masks, classes) = src.seg_label(name), src.instance_label(name)
        assert seg.shape == (32, 64) and 0 not in seg
        assert src.load_image(name).shape == (32, 64, 3)
        assert set(classes.tolist()) <= {11, 13}
        for m, c in zip(masks, classes):
            assert (seg[m] == c + 1).all()  # instances agree with the semantic map
        seen |= set(np.flatnonzero(src.label(name)).tolist())
    assert {0, 2, 10, 13} <= seen
    before = (root / "leftImg8bit" / "train").stat().st_mtime_ns
    assert generate(root, num_train=6, num_val=2, size=(32, 64), seed=1) == root  # finished: not rewritten
    assert (root / "leftImg8bit" / "train").stat().st_mtime_ns == before


def test_pipeline_source_and_config(root, tmp_path):
    from irnet_fast.pipeline import Config
    from irnet_fast.pipeline.common import build_source
    from irnet_fast.pipeline.config import ConfigError
    cfg = Config(dataset="cityscapes", dataset_root=str(root), out_dir=str(tmp_path / "out"), cityscapes_min_pixels=3)
    src = build_source(cfg, "train")
    assert isinstance(src, Cityscapes) and src.ids == ["aachen_000000_000019", "zurich_000001_000019"]
    written = tmp_path / "out" / "cityscapes_labels" / "train_min3.json"
    assert json.loads(written.read_text())["zurich_000001_000019"] == ["road", "sky", "car"]
    given = tmp_path / "given.json"
    given.write_text(json.dumps({"aachen_000000_000019": [], "zurich_000001_000019": ["bus"]}))
    src = build_source(cfg.override(labels_file=str(given)), "train")
    assert [cs.TRAIN_CLASSES[i] for i in np.flatnonzero(src.label("zurich_000001_000019"))] == ["bus"]
    with pytest.raises(ConfigError, match="cityscapes_min_pixels"):
        cfg.override(cityscapes_min_pixels=0)
    with pytest.raises(ConfigError, match="'cityscapes'"):
        cfg.override(dataset="kitti")
