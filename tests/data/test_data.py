"""Data layer: the synthetic VOC-layout generator, the VOC and COCO readers, transforms, datasets
and the bad-data errors."""
import json
import shutil
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from irnet_fast import ops
from irnet_fast.data import coco, synthetic, transforms as T, voc
from irnet_fast.data.voc import VOC12, VOC_CLASSES

NUM_TRAIN, NUM_VAL, SIZE, K = 10, 4, (96, 120), 4


@pytest.fixture(scope="module")
def devkit(tmp_path_factory):
    return synthetic.generate(tmp_path_factory.mktemp("voc"), num_train=NUM_TRAIN, num_val=NUM_VAL,
                              size=SIZE, num_classes=K, seed=3)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def num_dirs(radius):
    return (radius - 1) + sum(1 for y in range(1, radius) for x in range(-(radius - 1), radius)
                              if x * x + y * y < radius * radius)


# ------------------------------------------------------------------------------------------------
# generator


def test_generator_deterministic(tmp_path):
    a = _files(synthetic.generate(tmp_path / "a", num_train=5, num_val=2, size=(64, 80), seed=7))
    b = _files(synthetic.generate(tmp_path / "b", num_train=5, num_val=2, size=(64, 80), seed=7))
    c = _files(synthetic.generate(tmp_path / "c", num_train=5, num_val=2, size=(64, 80), seed=8))
    assert a == b
    assert a.keys() == c.keys()
    assert a["JPEGImages/2012_000000.jpg"] != c["JPEGImages/2012_000000.jpg"]
    assert not any(".tmp" in k for k in a)  # atomic writes leave no temporary file


def test_generator_skips_finished_and_overwrites(tmp_path):
    root = synthetic.generate(tmp_path, num_train=2, num_val=1, size=(32, 40))
    jpg = root / "JPEGImages" / "2012_000000.jpg"
    jpg.write_bytes(b"changed")
    synthetic.generate(tmp_path, num_train=2, num_val=1, size=(32, 40))
    assert jpg.read_bytes() == b"changed"  # same parameters: left as is
    synthetic.generate(tmp_path, num_train=2, num_val=1, size=(32, 40), overwrite=True)
    assert jpg.read_bytes() != b"changed"


def test_generator_layout(devkit):
    truth = synthetic.load_truth(devkit)
    names = [f"2012_{i:06d}" for i in range(NUM_TRAIN + NUM_VAL)]
    assert sorted(truth) == names
    for sub in ("Segmentation", "Main"):
        assert (devkit / "ImageSets" / sub / "train.txt").read_text().split() == names[:NUM_TRAIN]
        assert (devkit / "ImageSets" / sub / "val.txt").read_text().split() == names[NUM_TRAIN:]
    assert (devkit / "ImageSets/Segmentation/train_aug.txt").read_text().split() == names[:NUM_TRAIN]
    counts, same_class = [], 0
    for name in names:
        with Image.open(devkit / "JPEGImages" / f"{name}.jpg") as img:
            assert img.mode == "RGB" and img.size == (SIZE[1], SIZE[0])
        with Image.open(devkit / "SegmentationClass" / f"{name}.png") as cls_im, \
                Image.open(devkit / "SegmentationObject" / f"{name}.png") as obj_im:
            assert cls_im.mode == obj_im.mode == "P"
            cls, obj = np.array(cls_im), np.array(obj_im)
        assert cls.shape == obj.shape == SIZE
        assert np.array_equal(cls == 255, obj == 255)  # one void band in both
        assert (cls == 255).any()
        inst_classes = truth[name]["instance_classes"]
        n = len(inst_classes)
        assert 1 <= n <= 4
        counts.append(n)
        same_class += len(set(inst_classes)) < n
        assert set(np.unique(obj)) - {0, 255} == set(range(1, n + 1))  # instances are distinct ids
        for k, c in enumerate(inst_classes, 1):
            assert set(np.unique(cls[obj == k])) == {c + 1}
        assert set(np.unique(cls[obj == 0])) == {0}
        root = ET.parse(devkit / "Annotations" / f"{name}.xml").getroot()
        objs = root.findall("object")
        assert [o.findtext("name") for o in objs] == [VOC_CLASSES[c] for c in inst_classes]
        for k, o in enumerate(objs, 1):
            ys, xs = np.nonzero(obj == k)
            box = [int(o.find("bndbox").findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")]
            assert xs.min() + 1 >= box[0] and xs.max() + 1 <= box[2]
            assert ys.min() + 1 >= box[1] and ys.max() + 1 <= box[3]
        assert int(root.find("size").findtext("width")) == SIZE[1]
    assert max(counts) > 1 and same_class > 0


def test_generator_speed_and_bad_args(tmp_path):
    import time
    t0 = time.perf_counter()
    synthetic.generate(tmp_path / "speed", num_train=40, num_val=10, size=(128, 160))
    assert time.perf_counter() - t0 < 10
    with pytest.raises(ValueError, match="num_classes"):
        synthetic.generate(tmp_path / "x", num_classes=21)
    with pytest.raises(ValueError, match="at least one image"):
        synthetic.generate(tmp_path / "x", num_train=0, num_val=0)


def _class_pattern_fraction(root, name, inst_classes):
    """Per instance: the fraction of its visible pixels whose colour lies near the segment between
    its class's two pattern colours (the class-specific appearance)."""
    img = np.asarray(Image.open(root / "JPEGImages" / f"{name}.jpg"), np.float64)
    obj = np.array(Image.open(root / "SegmentationObject" / f"{name}.png"))
    out = []
    for k, c in enumerate(inst_classes, 1):
        a, b = (np.asarray(x, np.float64) for x in synthetic.CLASS_STYLES[c][:2])
        px = img[obj == k]
        t = np.clip(((px - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
        dist = np.linalg.norm(px - (a + t[:, None] * (b - a)), axis=1)
        out.append((dist < 45).mean())
    return out


def test_part_style_shows_the_class_on_a_fifth_of_each_object(tmp_path):
    """``part`` (default): the class pattern covers about a fifth of an object, the rest is a body of
    no class; ``texture``: the whole object carries its class's colours."""
    fractions = {}
    for style in ("part", "texture"):
        root = synthetic.generate(tmp_path / style, num_train=12, num_val=0, size=(96, 120), seed=1, style=style)
        truth = synthetic.load_truth(root)
        assert json.loads((root / "synthetic.json").read_text())["params"]["style"] == style
        fractions[style] = [f for n, t in truth.items() for f in _class_pattern_fraction(root, n, t["instance_classes"])]
    part, texture = np.median(fractions["part"]), np.median(fractions["texture"])
    assert 0.12 < part < 0.4 and texture > 0.8, (part, texture)
    with pytest.raises(ValueError, match="style must be one of 'part', 'texture'"):
        synthetic.generate(tmp_path / "x", style="stripes")


# ------------------------------------------------------------------------------------------------
# VOC reader


def test_voc_reader(devkit):
    truth = synthetic.load_truth(devkit)
    train, val = VOC12(devkit, "train"), VOC12(devkit, "val")
    assert len(train) == NUM_TRAIN and len(val) == NUM_VAL
    assert VOC12(devkit, "train_aug").ids == train.ids
    assert VOC12(devkit, devkit / "ImageSets/Segmentation/val.txt").ids == val.ids
    for name in train.ids + val.ids:
        reader = train if name in train.ids else val
        expected = np.zeros(20, np.float32)
        expected[truth[name]["instance_classes"]] = 1
        lab = reader.label(name)
        assert lab.dtype == np.float32 and lab.shape == (20,)
        np.testing.assert_array_equal(lab, expected)
        img = reader.load_image(name)
        assert img.dtype == np.uint8 and img.shape == SIZE + (3,)
        seg = reader.seg_label(name)
        assert seg.dtype == np.uint8 and seg.shape == SIZE
        assert set(np.unique(seg)) <= set(range(K + 1)) | {255}
        masks, classes = reader.instance_label(name)
        assert masks.dtype == bool and masks.shape == (len(classes),) + SIZE
        assert classes.tolist() == truth[name]["instance_classes"]
        assert not (masks.sum(0) > 1).any()
        for m, c in zip(masks, classes):
            assert (seg[m] == c + 1).all()
    # labels files: the generated text file, JSON and the reference's pickled .npy
    txt = VOC12(devkit, "train", labels_file=devkit / "cls_labels.txt")
    for name in train.ids:
        np.testing.assert_array_equal(txt.label(name), train.label(name))


def test_labels_file_formats(devkit, tmp_path):
    train = VOC12(devkit, "train")
    ref = train.labels()
    (tmp_path / "l.json").write_text(json.dumps({n: np.nonzero(v)[0].tolist() for n, v in ref.items()}))
    np.save(tmp_path / "l.npy", {voc.encode_int_filename(n): v for n, v in ref.items()}, allow_pickle=True)
    (tmp_path / "l.txt").write_text("".join(f"{n} {' '.join(map(str, np.nonzero(v)[0]))}\n" for n, v in ref.items()))
    (tmp_path / "m.json").write_text(json.dumps({n: v.astype(int).tolist() for n, v in ref.items()}))
    for f, kw in (("l.json", {}), ("m.json", {}), ("l.npy", {"allow_pickle": True}), ("l.txt", {})):
        got = VOC12(devkit, "train", labels_file=tmp_path / f, **kw).labels()
        assert got.keys() == ref.keys()
        for n in ref:
            np.testing.assert_array_equal(got[n], ref[n])
    with pytest.raises(ValueError, match="allow_pickle"):
        VOC12(devkit, "train", labels_file=tmp_path / "l.npy")
    (tmp_path / "bad.txt").write_text("2012_000000 unicorn\n")
    with pytest.raises(ValueError, match=r"bad.txt:1: unknown class name 'unicorn'"):
        voc.load_labels_file(tmp_path / "bad.txt")


# ------------------------------------------------------------------------------------------------
# transforms


def test_normalize_and_chw():
    img = np.array([[[0, 128, 255]]], np.uint8)
    out = T.normalize(img)
    expected = [(0 / 255 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (255 / 255 - 0.406) / 0.225]
    np.testing.assert_allclose(out[0, 0], expected, rtol=1e-6)
    assert out.dtype == np.float32
    x = np.arange(24).reshape(2, 4, 3)
    chw = T.hwc_to_chw(x)
    assert chw.shape == (3, 2, 4) and chw[2, 1, 3] == x[1, 3, 2] and chw.flags.c_contiguous


def test_crop_fill_and_box():
    rng = np.random.default_rng(0)
    img = np.full((30, 50, 3), 7, np.uint8)
    lab = np.full((30, 50), 3, np.uint8)
    out_img, out_lab = T.random_crop(img, 40, rng, label=lab)
    assert out_img.shape == (40, 40, 3) and out_lab.shape == (40, 40)
    assert set(np.unique(out_img)) == {0, 7} and set(np.unique(out_lab)) == {3, 255}
    assert np.array_equal(out_img[..., 0] == 0, out_lab == 255)  # same box for image and label
    assert (out_lab == 3).sum() == 30 * 40  # the 30-high image fits whole, 40 of 50 columns
    # larger than the crop: a window of the image, no fill
    big = np.arange(100 * 120).reshape(100, 120).astype(np.int32)
    win = T.random_crop(big, 64, np.random.default_rng(1))
    r, c = np.argwhere(big == win[0, 0])[0]
    assert np.array_equal(win, big[r:r + 64, c:c + 64])


def test_flip_consistency_and_determinism():
    img = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    lab = (np.arange(30)[None, :] * np.ones((20, 1), int)).astype(np.uint8)
    flips = 0
    for seed in range(20):
        fi, fl = T.random_lr_flip(img, np.random.default_rng(seed), label=lab)
        flipped = fl[0, 0] == 29
        flips += flipped
        assert np.array_equal(fi, img[:, ::-1] if flipped else img)
        assert np.array_equal(fl, lab[:, ::-1] if flipped else lab)
    assert 0 < flips < 20
    tf = T.AffinityTransform(crop_size=48)
    a = tf(img, lab, np.random.default_rng(5))
    b = tf(img, lab, np.random.default_rng(5))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    # image columns follow the label: the colour of a column of the label matches the image's
    rgb = np.repeat(lab[..., None] * 8, 3, axis=2).astype(np.uint8)
    for seed in range(6):
        ti, tl = T.AffinityTransform(rescale=None, crop_size=40)(rgb, lab, np.random.default_rng(seed))
        valid = tl != 255
        restored = (ti[0] * 0.229 + 0.485) * 255
        np.testing.assert_allclose(restored[valid], tl[valid].astype(np.float32) * 8, atol=1e-3)
        assert (ti[:, ~valid] == 0).all()


def test_resize_long_and_scale_ranges():
    img = np.zeros((100, 200, 3), np.uint8)
    longs = {T.random_resize_long(img, 320, 640, np.random.default_rng(s)).shape[1] for s in range(30)}
    assert min(longs) >= 320 and max(longs) <= 640 and len(longs) > 5
    out = T.random_resize_long(np.zeros((300, 150, 3), np.uint8), 320, 320, np.random.default_rng(0))
    assert out.shape == (320, 160, 3)
    lab = np.zeros((100, 200), np.uint8)
    for s in range(10):
        i, l = T.random_scale(img, (0.5, 1.5), np.random.default_rng(s), label=lab)
        assert i.shape[:2] == l.shape and 50 <= l.shape[0] <= 150


def test_classification_dataset(devkit):
    ds = voc.VOC12ClassificationDataset(devkit, "train", transform=T.ClassificationTransform(crop_size=64), seed=1)
    item = ds[3]
    assert item["img"].shape == (3, 64, 64) and item["img"].dtype == torch.float32
    assert item["label"].shape == (20,) and item["label"].sum() >= 1
    assert torch.equal(ds[3]["img"], item["img"])  # a function of (seed, epoch, index)
    ds.set_epoch(1)
    assert not torch.equal(ds[3]["img"], item["img"])
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["img"].shape == (4, 3, 64, 64) and len(batch["name"]) == 4
    inf = voc.VOC12InferenceDataset(devkit, "val")
    it = inf[0]
    assert it["img"].shape == SIZE + (3,) and it["img"].dtype == np.uint8 and it["name"] == inf.ids[0]
    assert inf.normalized(it["img"]).shape == (3,) + SIZE


@pytest.mark.parametrize("crop,radius", [(64, 5), (128, 10)])
def test_affinity_dataset(devkit, tmp_path, crop, radius):
    label_dir = tmp_path / "ir_label"
    label_dir.mkdir()
    reader = VOC12(devkit, "train")
    for n in reader.ids:  # IR labels: the GT with its void band as "unsure"
        Image.fromarray(reader.seg_label(n)).save(label_dir / f"{n}.png")
    ds = voc.VOC12AffinityDataset(devkit, label_dir, "train", crop_size=crop, radius=radius, seed=0)
    item = ds[2]
    h = crop // 4
    rf = radius - 1
    d, m = num_dirs(radius), (h - rf) * (h - 2 * rf)
    assert item["img"].shape == (3, crop, crop)
    assert item["reduced_label"].shape == (h, h)
    for key in ("aff_bg_pos_label", "aff_fg_pos_label", "aff_neg_label"):
        assert item[key].shape == (d, m) and item[key].dtype == torch.float32
    # the reduced label is the transformed label sampled at pixel centres (PIL nearest, 1/4)
    img, lab = ds.transform(reader.load_image(reader.ids[2]), voc.load_label_png(label_dir / f"{reader.ids[2]}.png"),
                            ds.rng(2))
    assert np.array_equal(item["reduced_label"].numpy(), lab[2::4, 2::4])
    assert torch.equal(item["img"], torch.from_numpy(img))
    expect = ops.path_affinity_labels(torch.from_numpy(lab[2::4, 2::4].astype(np.int64)), radius)
    for key, e in zip(("aff_bg_pos_label", "aff_fg_pos_label", "aff_neg_label"), expect):
        assert torch.equal(item[key], e)
    total = item["aff_bg_pos_label"] + item["aff_fg_pos_label"] + item["aff_neg_label"]
    assert total.max() <= 1


def test_affinity_crop_too_small(devkit, tmp_path):
    with pytest.raises(ValueError, match="too small for radius 10"):
        voc.VOC12AffinityDataset(devkit, tmp_path, "train", crop_size=64, radius=10)


# ------------------------------------------------------------------------------------------------
# COCO


@pytest.fixture
def coco_tree(tmp_path):
    img_dir = tmp_path / "train2014"
    img_dir.mkdir()
    images = []
    for k, (iid, h, w) in enumerate([(42, 20, 30), (7, 16, 16), (100, 10, 12)]):
        name = f"COCO_train2014_{iid:012d}.jpg"
        Image.fromarray(np.full((h, w, 3), 40 * k, np.uint8)).save(img_dir / name)
        images.append({"id": iid, "file_name": name, "height": h, "width": w})
    # RLE (column-major) of a 16x16 mask whose columns 2..3 are set
    counts = [32, 32, 256 - 64]
    anns = [
        {"id": 1, "image_id": 42, "category_id": 90, "iscrowd": 0,
         "segmentation": [[2, 2, 12, 2, 12, 10, 2, 10]], "area": 80, "bbox": [2, 2, 10, 8]},
        {"id": 2, "image_id": 42, "category_id": 3, "iscrowd": 0,
         "segmentation": [[20, 5, 28, 5, 28, 15, 20, 15]], "area": 80, "bbox": [20, 5, 8, 10]},
        {"id": 3, "image_id": 7, "category_id": 5, "iscrowd": 1,
         "segmentation": {"counts": counts, "size": [16, 16]}, "area": 32, "bbox": [2, 0, 2, 16]},
    ]
    cats = [{"id": 90, "name": "toothbrush"}, {"id": 3, "name": "car"}, {"id": 5, "name": "airplane"}]
    ann_file = tmp_path / "instances_train2014.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return img_dir, ann_file


def test_coco_reader(coco_tree):
    img_dir, ann_file = coco_tree
    src = coco.COCO2014(img_dir, ann_file, use_pycocotools=False)
    assert src.ids == ["COCO_train2014_000000000007", "COCO_train2014_000000000042", "COCO_train2014_000000000100"]
    assert src.class_names == ("car", "airplane", "toothbrush") and src.num_classes == 3
    np.testing.assert_array_equal(src.label(src.ids[0]), [0, 1, 0])  # crowd counts for labels
    np.testing.assert_array_equal(src.label(src.ids[1]), [1, 0, 1])
    np.testing.assert_array_equal(src.label(src.ids[2]), [0, 0, 0])
    assert src.load_image(src.ids[1]).shape == (20, 30, 3)
    masks, classes = src.instance_label(src.ids[1])
    assert masks.shape == (2, 20, 30) and classes.tolist() == [2, 0]
    assert masks[0, 2:11, 2:13].all() and masks[0].sum() == 9 * 11
    masks, classes = src.instance_label(src.ids[0], include_crowd=True)
    assert masks[0][:, 2:4].all() and masks[0].sum() == 32
    assert src.instance_label(src.ids[0])[0].shape == (0, 16, 16)
    seg = src.seg_label(src.ids[0])
    assert set(np.unique(seg)) == {0, 255}
    assert coco.COCO2014(img_dir, ann_file, drop_unlabeled=True).ids == src.ids[:2]
    ds = coco.COCOClassificationDataset(img_dir, ann_file, transform=T.ClassificationTransform(crop_size=32))
    assert len(ds) == 2 and ds[0]["img"].shape == (3, 32, 32) and ds[0]["label"].shape == (3,)
    # compressed RLE without pycocotools: our decoder, checked against the mask it came from
    from irnet_fast.coco_export import encode_rle
    mask = np.random.default_rng(0).random((7, 5)) < 0.4
    assert np.array_equal(coco.annotation_to_mask(encode_rle(mask), 7, 5, use_pycocotools=False), mask)
    with pytest.raises(ValueError):
        coco.annotation_to_mask({"counts": "abc", "size": [4, 4]}, 4, 4, use_pycocotools=False)
    with pytest.raises(ValueError, match="unsupported COCO segmentation"):
        coco.annotation_to_mask("polygon?", 4, 4, use_pycocotools=False)


def test_coco_errors(coco_tree, tmp_path):
    img_dir, ann_file = coco_tree
    with pytest.raises(FileNotFoundError, match="COCO image folder not found"):
        coco.COCO2014(tmp_path / "nope", ann_file)
    with pytest.raises(FileNotFoundError, match="instances_val2014.json"):
        coco.COCO2014(img_dir, tmp_path / "instances_val2014.json")
    bad = json.loads(ann_file.read_text())
    bad["annotations"][0]["category_id"] = 1234
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="unknown category id 1234"):
        coco.COCO2014(img_dir, tmp_path / "bad.json")


# ------------------------------------------------------------------------------------------------
# bad data


def test_missing_devkit(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"VOC devkit folder not found: .*nowhere.*JPEGImages"):
        VOC12(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no JPEGImages/ folder"):
        VOC12(tmp_path / "empty")


def test_missing_list(devkit):
    with pytest.raises(FileNotFoundError, match="image list 'test' not found.*ImageSets"):
        VOC12(devkit, "test")


def test_corrupt_and_missing_images(devkit, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(devkit, root)
    names = VOC12(root, "train").ids
    bad = root / "JPEGImages" / f"{names[1]}.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated JPEG
    (root / "JPEGImages" / f"{names[4]}.jpg").unlink()
    with pytest.raises(voc.CorruptImageError, match=names[1]):
        VOC12(root, "train").load_image(names[1])
    with pytest.raises(FileNotFoundError, match=f"image file not found: .*{names[4]}.jpg"):
        VOC12(root, "train").load_image(names[4])
    strict = voc.VOC12InferenceDataset(root, "train", skip_corrupt=False)
    with pytest.raises(voc.CorruptImageError, match=f"{names[1]}.jpg"):
        strict[1]
    ds = voc.VOC12ClassificationDataset(root, "train", transform=T.ClassificationTransform(crop_size=32))
    with pytest.warns(RuntimeWarning) as record:
        got = [ds[i]["name"] for i in range(len(ds))]
    messages = sorted(str(w.message) for w in record)
    assert len(messages) == 2
    assert messages[0].startswith(f"skipping unreadable image '{names[1]}': cannot decode image ")
    assert messages[1].startswith(f"skipping unreadable image '{names[4]}': image file not found: ")
    assert names[1] not in got and names[4] not in got and len(got) == len(names)
    assert ds.skipped == {names[1], names[4]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reported once per image
        ds[1]


def test_label_file_mismatch(devkit, tmp_path):
    ids = VOC12(devkit, "train").ids
    (tmp_path / "labels.txt").write_text("".join(f"{n} aeroplane\n" for n in ids[:-2]))
    with pytest.raises(ValueError, match=rf"labels.txt has no labels for 2 of {len(ids)} listed images: "
                                         rf"{ids[-2]}, {ids[-1]}"):
        VOC12(devkit, "train", labels_file=tmp_path / "labels.txt")
    with pytest.raises(FileNotFoundError, match="labels file not found"):
        VOC12(devkit, "train", labels_file=tmp_path / "none.txt")
