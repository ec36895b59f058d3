"""COCO compressed RLE (hand-computed strings, round trips, pycocotools when installed) and the JSON export."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from irnet_fast.coco_export import decode_rle, encode_rle, export_coco, mask_area, mask_bbox


def test_rle_hand_computed_2d():
    # H=3, W=2. Column-major: column 0 = 0 1 0, column 1 = 1 1 0 -> 0 1 0 1 1 0
    # runs (from a 0-run): 1, 1, 1, 2, 1. Runs 0..2 are written as they are: '1' '1' '1'
    # (48 + 1); run 3: 2 - run 1 = 1 -> '1'; run 4: 1 - run 2 = 0 -> '0'.
    m = np.array([[0, 1],
                  [1, 1],
                  [0, 0]], bool)
    assert encode_rle(m) == {"size": [3, 2], "counts": "11110"}
    np.testing.assert_array_equal(decode_rle({"size": [3, 2], "counts": "11110"}), m)


def test_rle_hand_computed_multichar_and_negative():
    # H=42, W=1: 3 zeros, 35 ones, 2 zeros, 1 one, 1 zero -> runs 3, 35, 2, 1, 1
    # run 0: 3 -> '3' (51)
    # run 1: 35 = 0b1_00011: low group 3, rest 1 != 0 -> 48 + (3 | 0x20) = 83 'S'; then 1 -> '1'
    # run 2: 2 -> '2'
    # run 3: 1 - 35 = -34: low group -34 & 31 = 30 (sign bit 0x10 set), rest -34 >> 5 = -2 != -1
    #        -> 48 + (30 | 0x20) = 110 'n'; then -2 & 31 = 30, rest -1 -> stop: 48 + 30 = 78 'N'
    # run 4: 1 - 2 = -1: group 31 (sign set), rest -1 -> stop: 48 + 31 = 79 'O'
    m = np.zeros((42, 1), bool)
    m[3:38] = True
    m[40] = True
    assert encode_rle(m) == {"size": [42, 1], "counts": "3S12nNO"}
    np.testing.assert_array_equal(decode_rle(encode_rle(m)), m)


def test_rle_edge_cases():
    # all zero: one 0-run of 6 -> '6'; all one: 0-run of 0, 1-run of 6 -> '06'
    assert encode_rle(np.zeros((2, 3), bool))["counts"] == "6"
    assert encode_rle(np.ones((2, 3), bool))["counts"] == "06"
    assert encode_rle(np.ones((1, 1), bool)) == {"size": [1, 1], "counts": "01"}
    assert encode_rle(np.zeros((1, 1), bool)) == {"size": [1, 1], "counts": "1"}
    assert encode_rle(np.zeros((0, 4), bool)) == {"size": [0, 4], "counts": "0"}
    assert decode_rle({"size": [0, 4], "counts": "0"}).shape == (0, 4)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (5, 3), (13, 17), (64, 33), (0, 3), (375, 500)])
def test_rle_round_trip(shape):
    rng = np.random.default_rng(sum(shape))
    cases = [np.zeros(shape, bool), np.ones(shape, bool), rng.random(shape) < 0.5, rng.random(shape) < 0.02]
    if min(shape) > 2:  # a blob: long runs, multi-character counts
        blob = np.zeros(shape, bool)
        blob[shape[0] // 4:3 * shape[0] // 4, shape[1] // 3:] = True
        cases.append(blob)
    for m in cases:
        rle = encode_rle(m)
        assert rle["size"] == list(shape) and isinstance(rle["counts"], str)
        back = decode_rle(rle)
        assert back.dtype == bool and back.shape == m.shape
        np.testing.assert_array_equal(back, m)
        # bytes counts (what pycocotools returns) decode the same
        np.testing.assert_array_equal(decode_rle({"size": rle["size"], "counts": rle["counts"].encode()}), m)


def test_decode_uncompressed_and_errors():
    # uncompressed counts, column-major: 1 zero, 2 ones, 3 zeros on a 3 x 2 mask
    m = decode_rle({"size": [3, 2], "counts": [1, 2, 3]})
    np.testing.assert_array_equal(m, [[0, 0], [1, 0], [1, 0]])
    with pytest.raises(ValueError, match="summing to 3 x 2 = 6"):
        decode_rle({"size": [3, 2], "counts": "11"})
    with pytest.raises(ValueError, match="ends inside a run"):
        decode_rle({"size": [3, 2], "counts": "S"})
    with pytest.raises(ValueError, match=r"mask expected a bool array of shape \(H, W\), got shape \(2, 2, 2\)"):
        encode_rle(np.zeros((2, 2, 2), bool))
    with pytest.raises(ValueError, match="dtype float64"):
        encode_rle(np.zeros((2, 2)))


def test_area_and_bbox():
    m = np.zeros((6, 8), bool)
    m[1:4, 2:7] = True  # rows 1..3, columns 2..6
    m[5, 3] = True      # extends the rows down to 5
    assert mask_area(m) == 16
    assert mask_bbox(m) == [2.0, 1.0, 5.0, 5.0]  # x = 2, y = 1, w = 6 - 2 + 1, h = 5 - 1 + 1
    assert mask_bbox(np.zeros((3, 3), bool)) == [0.0, 0.0, 0.0, 0.0]
    assert mask_area(np.zeros((3, 3), bool)) == 0


def test_against_pycocotools():
    mask_utils = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(3)
    for shape in [(1, 1), (5, 3), (40, 61), (200, 300)]:
        for m in (rng.random(shape) < 0.3, np.zeros(shape, bool), np.ones(shape, bool)):
            ref = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            ours = encode_rle(m)
            assert ours["counts"] == ref["counts"].decode()
            assert ours["size"] == list(ref["size"])
            assert mask_area(m) == int(mask_utils.area(ref))
            np.testing.assert_allclose(mask_bbox(m), mask_utils.toBbox(ref))


def _records(rng):
    h1, w1, h2, w2 = 20, 30, 17, 11
    m1 = np.zeros((2, h1, w1), bool)
    m1[0, 2:8, 3:12] = True
    m1[1, 10:19, 20:29] = True
    m2 = rng.random((1, h2, w2)) < 0.4
    return [
        {"file_name": "a.jpg", "height": h1, "width": w1, "masks": m1, "labels": np.array([0, 2]),
         "scores": np.array([0.9, 0.25], np.float32)},
        {"file_name": "b.jpg", "height": h2, "width": w2, "image_id": 42, "masks": m2, "labels": [1],
         "scores": [0.5]},
        {"file_name": "c.jpg", "height": 5, "width": 6, "masks": np.zeros((0, 5, 6), bool),
         "labels": np.zeros(0, np.int64), "scores": np.zeros(0)},
    ]


def test_export_coco_structure_and_reload(tmp_path):
    rng = np.random.default_rng(0)
    records = _records(rng)
    out = export_coco(iter(records), ["cat", "dog", "horse"], tmp_path / "sub" / "pred.json")
    assert out == tmp_path / "sub" / "pred.json"
    assert os.listdir(tmp_path / "sub") == ["pred.json"]  # no temporary file left
    with open(out) as fh:
        data = json.load(fh)
    assert data["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "horse"}]
    assert data["images"] == [
        {"id": 1, "file_name": "a.jpg", "height": 20, "width": 30},
        {"id": 42, "file_name": "b.jpg", "height": 17, "width": 11},
        {"id": 3, "file_name": "c.jpg", "height": 5, "width": 6},
    ]
    anns = data["annotations"]
    assert [a["id"] for a in anns] == [1, 2, 3]
    assert [a["image_id"] for a in anns] == [1, 1, 42]
    assert [a["category_id"] for a in anns] == [1, 3, 2]  # label + 1
    assert [a["iscrowd"] for a in anns] == [0, 0, 0]
    assert [a["score"] for a in anns] == pytest.approx([0.9, 0.25, 0.5])
    assert anns[0]["bbox"] == [3, 2, 9, 6] and anns[0]["area"] == 54  # columns 3..11, rows 2..7
    # loading as a torchvision / pycocotools user would: json.load, then decode each RLE
    masks = [m for r in records for m in np.asarray(r["masks"])]
    for ann, m in zip(anns, masks):
        assert set(ann) == {"id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd", "score"}
        np.testing.assert_array_equal(decode_rle(ann["segmentation"]), m)
        assert ann["area"] == int(m.sum()) and ann["bbox"] == mask_bbox(m)


def test_export_coco_atomic_and_errors(tmp_path):
    path = tmp_path / "pred.json"
    path.write_text("old")
    bad = _records(np.random.default_rng(0))
    bad[1]["labels"] = [3]  # only 3 categories
    with pytest.raises(ValueError, match=r"record 1: labels expected 0-based class ids in \[0, 3\)"):
        export_coco(bad, ["cat", "dog", "horse"], path)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["pred.json"]
    rec = _records(np.random.default_rng(0))[0]
    with pytest.raises(ValueError, match=r"masks expected a bool array of shape \(2, 21, 30\), got shape \(2, 20, 30"):
        export_coco([dict(rec, height=21)], ["a", "b", "c"], path)
    with pytest.raises(ValueError, match=r"scores expected a real array of shape \(2,\)"):
        export_coco([dict(rec, scores=[0.1])], ["a", "b", "c"], path)
    with pytest.raises(ValueError, match="image_id expected to be unique"):
        export_coco([dict(rec, image_id=1), dict(rec, image_id=1)], ["a", "b", "c"], path)
    with pytest.raises(ValueError, match="'file_name'"):
        export_coco([{k: v for k, v in rec.items() if k != "file_name"}], ["a", "b", "c"], path)
    assert path.read_text() == "old"
    export_coco([rec], ["a", "b", "c"], path)
    assert json.loads(path.read_text())["images"][0]["file_name"] == "a.jpg"


# --- ids of the dataset, and pycocotools' loadRes + COCOeval on the export ----------------------

def test_voc_image_ids_are_the_references_and_stable():
    from irnet_fast.coco_export import voc_image_id
    assert voc_image_id("2007_000032") == 2007000032 and voc_image_id("2012_000007") == 2012000007
    assert voc_image_id("123") == 123
    # other names: crc32 (zlib's, independent of the process) folded into 1 .. 2**31 - 1
    assert voc_image_id("street_7") == 2457651964 - (2 ** 31 - 1) + 1 == 310168318  # crc32 2457651964
    assert 1 <= voc_image_id("") <= 2 ** 31 - 1


def test_pycocotools_and_own_encoder_give_the_same_json():
    pytest.importorskip("pycocotools.mask")
    from irnet_fast.coco_export import coco_dataset, encode_masks
    records = _records(np.random.default_rng(5))
    assert coco_dataset(records, ["a", "b", "c"], use_pycocotools=True) == \
        coco_dataset(records, ["a", "b", "c"], use_pycocotools=False)
    masks = np.random.default_rng(1).random((3, 9, 14)) < 0.3
    assert encode_masks(masks, True) == [encode_rle(m) for m in masks]
    assert encode_masks(np.zeros((0, 4, 4), bool)) == []


def test_category_ids_and_ground_truth_records():
    from irnet_fast.coco_export import coco_dataset
    data = coco_dataset(_records(np.random.default_rng(0)), ["cat", "dog", "horse"], category_ids=[7, 3, 50])
    assert data["categories"] == [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 50, "name": "horse"}]
    assert [a["category_id"] for a in data["annotations"]] == [7, 50, 3]  # labels 0, 2, 1
    gt = coco_dataset([{k: v for k, v in r.items() if k != "scores"} for r in _records(np.random.default_rng(0))],
                      ["cat", "dog", "horse"])
    assert all("score" not in a for a in gt["annotations"]) and len(gt["annotations"]) == 3
    with pytest.raises(ValueError, match="category_ids expected 3 distinct ids"):
        coco_dataset([], ["a", "b", "c"], category_ids=[1, 1, 2])


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from irnet_fast.data import generate_synthetic
    return generate_synthetic(tmp_path_factory.mktemp("coco_ids") / "voc", num_train=6, num_val=0, size=(32, 48),
                              num_classes=4, seed=1)


def _predictions(source, out_dir, drop=()):
    """``ins_seg`` files of ``source``: the ground truth (scores 0.9, 0.8, ...) and one low-scoring
    false positive per image, minus the images in ``drop``'s instances."""
    from irnet_fast._io import save_npz
    from irnet_fast.data.instances import instance_label_map
    for i, name in enumerate(source.ids):
        masks, classes = source.instance_label(name)
        if name in drop:
            masks, classes = masks[:0], classes[:0]
        label = instance_label_map(masks)
        label.flat[np.flatnonzero(label.reshape(-1) == 0)[:9]] = len(classes) + 1  # on the background
        save_npz(out_dir / "ins_seg" / f"{name}.npz",
                 {"score": np.concatenate([0.9 - 0.1 * np.arange(len(classes)), [0.05]]).astype(np.float32),
                  "label": label, "class": np.concatenate([classes, [0]]).astype(np.int64)})


def _coco_eval(gt_json, annotations):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_json))
        ev = COCOeval(gt, gt.loadRes(annotations), "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_export_coco_keeps_the_coco_datasets_ids(synthetic, tmp_path):
    """A COCO-format copy of the synthetic data with ids of its own (images 1000, 1007, ...;
    categories 3, 8, 21, 90): the export uses them, and pycocotools evaluates it against that file."""
    from irnet_fast.coco_export import ground_truth_records
    from irnet_fast.data import VOC12
    from irnet_fast.pipeline import Config, export_coco as export_step
    voc = VOC12(synthetic, "train")
    records = list(ground_truth_records(voc))
    for i, rec in enumerate(records):
        rec["image_id"] = 1000 + 7 * i
    ann = export_coco(records, voc.class_names[:4], tmp_path / "instances.json", category_ids=[3, 8, 21, 90])
    cfg = Config(dataset="coco", dataset_root=str(synthetic / "JPEGImages"), coco_ann_file=str(ann),
                 out_dir=str(tmp_path / "out"), device="cpu", num_workers=0)
    from irnet_fast.pipeline.common import infer_source
    source = infer_source(cfg)
    _predictions(source, tmp_path / "out")
    result = export_step(cfg)
    data = json.loads(Path(result["path"]).read_text())
    assert [im["id"] for im in data["images"]] == [1000 + 7 * i for i in range(6)]
    assert [im["file_name"] for im in data["images"]] == [f"{n}.jpg" for n in voc.ids]
    assert data["categories"] == [{"id": c, "name": n} for c, n in zip([3, 8, 21, 90], voc.class_names[:4])]
    gt = json.loads(ann.read_text())
    assert {a["category_id"] for a in data["annotations"]} <= {3, 8, 21, 90}
    assert len(data["annotations"]) == len(gt["annotations"]) + 6  # one false positive per image
    pytest.importorskip("pycocotools")
    stats = _coco_eval(ann, data["annotations"])
    assert stats[0] == pytest.approx(1.0)  # every GT found first; the false positives rank last
    _predictions(source, tmp_path / "out2", drop=set(voc.ids[:3]))
    data2 = json.loads(Path(export_step(cfg.override(out_dir=str(tmp_path / "out2")))["path"]).read_text())
    assert 0.2 < _coco_eval(ann, data2["annotations"])[0] < 0.9


def test_export_coco_ids_of_a_voc_layout_dataset(synthetic, tmp_path):
    from irnet_fast.coco_export import coco_dataset, ground_truth_records
    from irnet_fast.data import VOC12
    from irnet_fast.pipeline import Config, export_coco as export_step
    voc = VOC12(synthetic, "train")
    cfg = Config(dataset_root=str(synthetic), infer_split="train", out_dir=str(tmp_path), device="cpu")
    _predictions(voc, tmp_path)
    data = json.loads(Path(export_step(cfg)["path"]).read_text())
    assert [im["id"] for im in data["images"]] == [2012000000 + i for i in range(6)]  # 2012_000000, ...
    assert data["categories"] == [{"id": i + 1, "name": n} for i, n in enumerate(voc.class_names)]
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(coco_dataset(ground_truth_records(voc), voc.class_names)))
    assert json.loads(gt.read_text())["images"] == data["images"]
    pytest.importorskip("pycocotools")
    assert _coco_eval(gt, data["annotations"])[0] == pytest.approx(1.0)


def test_without_pycocotools_the_own_encoder_is_used(monkeypatch):
    import irnet_fast.coco_export as ce
    monkeypatch.setattr(ce, "has_pycocotools", lambda: False)
    assert ce.encode_masks(np.ones((1, 2, 2), bool)) == [{"size": [2, 2], "counts": "04"}]
    with pytest.raises(ImportError, match="pip install pycocotools"):
        ce.encode_masks(np.ones((1, 2, 2), bool), use_pycocotools=True)
