"""COCO compressed RLE (hand-computed strings, round trips, pycocotools when installed) and the JSON export."""
import json
import os

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
