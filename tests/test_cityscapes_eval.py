"""Cityscapes instance AP against a hand-computed table and against the official evaluator; the
semantic mIoU over the 19 classes (no background)."""
import numpy as np
import pytest
from PIL import Image

from irnet_fast.cityscapes_eval import (OVERLAPS, CityscapesInstanceAP, has_cityscapesscripts,
                                        official_instance_ap)
from irnet_fast.metrics import ConfusionMatrix
from irnet_fast.pipeline.evaluate import _miou, _semantic

CAR, PERSON, ROAD = 13, 11, 0  # train ids


def _box(shape, rows, cols):
    m = np.zeros(shape, bool)
    m[rows[0]:rows[1], cols[0]:cols[1]] = True
    return m


def _hand_case():
    """20 x 40: cars A (26000) and B (26001) of 100 px, a small car C (26002, 25 px), a car group
    (26), a person (24000), void (0), road (7) elsewhere; eight predictions."""
    ids = np.full((20, 40), 7, np.int32)
    ids[0:10, 0:10] = 26000
    ids[10:20, 0:10] = 26001
    ids[0:5, 30:35] = 26002
    ids[10:20, 20:30] = 26
    ids[10:20, 30:40] = 24000
    ids[0:5, 20:30] = 0
    s = ids.shape
    preds = [
        (_box(s, (0, 10), (0, 10)), CAR, 0.9),     # A exactly: TP
        (_box(s, (10, 20), (0, 8)), CAR, 0.8),     # inside B, IoU 0.8: TP up to 0.75, FP from 0.8
        (_box(s, (10, 20), (20, 30)), CAR, 0.7),   # the group: neither TP nor FP
        (_box(s, (0, 10), (10, 20)), CAR, 0.85),   # road: FP
        (_box(s, (0, 5), (30, 35)), CAR, 0.5),     # the small car: neither
        (_box(s, (0, 5), (20, 30)), CAR, 0.95),    # void: neither
        (_box(s, (0, 10), (0, 10)), CAR, 0.4),     # A again: FP (the lower confidence)
        (_box(s, (10, 20), (10, 20)), ROAD, 0.99),  # a class without instances: left out
    ]
    masks = np.stack([p[0] for p in preds])
    return ids, masks, np.array([p[1] for p in preds]), np.array([p[2] for p in preds])


# Thresholds 0.5 .. 0.75: TP 0.9, TP 0.8, FP 0.85, FP 0.4 of 2 GT. At the scores 0.4, 0.8, 0.85, 0.9
# (tp, fp, fn) = (2, 2, 0), (2, 1, 0), (1, 1, 1), (1, 0, 1): precision 1/2, 2/3, 1/2, 1, then 1;
# recall 1, 1, 1/2, 1/2, then 0; steps (r[i-1] - r[i+1]) / 2 = 0, 1/4, 1/4, 1/4, 1/4:
# AP = 2/3 * 1/4 + 1/2 * 1/4 + 1/4 + 1/4 = 19/24.
# Thresholds 0.8 .. 0.95 (0.8 is not above np.arange's 0.8000000000000003): B unmatched (a hard
# FN), its prediction a FP: TP only at 0.9, recall 1/2 throughout, AP = 1/4 + 1/4 = 1/2.
CAR_AP = np.array([19 / 24] * 6 + [0.5] * 4)


def _check_hand(res):
    matrix = res["matrix"]
    names = ["person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]
    assert matrix.shape == (8, len(OVERLAPS))
    np.testing.assert_allclose(matrix[2], CAR_AP, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(matrix[0], np.zeros(10))  # a person GT without predictions: 0
    assert np.isnan(matrix[[1, 3, 4, 5, 6, 7]]).all()  # no GT: NaN
    assert res["ap"]["car"] == pytest.approx((6 * 19 / 24 + 4 * 0.5) / 10, abs=1e-15)
    assert res["ap50"]["car"] == pytest.approx(19 / 24, abs=1e-15)
    assert res["map"] == pytest.approx((6 * 19 / 24 + 2) / 20, abs=1e-15)
    assert res["map50"] == pytest.approx(19 / 48, abs=1e-15)
    assert list(res["ap"]) == names and np.isnan(res["ap"]["rider"])


def test_hand_computed_table():
    ids, masks, classes, scores = _hand_case()
    _check_hand(CityscapesInstanceAP().update(masks, classes, scores, ids).compute())


def test_empty_and_bad_inputs():
    ids = np.full((8, 8), 7, np.int32)
    ids[:4, :4] = 24000  # 16 px: under the 100 px minimum, so no GT instance to find
    res = CityscapesInstanceAP().update(np.zeros((0, 8, 8), bool), np.zeros(0, np.int64), np.zeros(0), ids).compute()
    assert np.isnan(res["matrix"]).all() and np.isnan(res["map"])
    with pytest.raises(ValueError, match="pred_masks expected masks of size"):
        CityscapesInstanceAP().update(np.zeros((1, 4, 4), bool), [CAR], [0.5], ids)
    with pytest.raises(ValueError, match="instance_ids expected"):
        CityscapesInstanceAP().update(np.zeros((0, 8, 8), bool), [], [], ids[None])


def _write_gt(path, ids):
    Image.fromarray(ids.astype(np.uint16)).save(path)
    return path


@pytest.mark.skipif(not has_cityscapesscripts(), reason="cityscapesscripts not installed")
def test_official_evaluator_hand_case(tmp_path):
    ids, masks, classes, scores = _hand_case()
    _check_hand(official_instance_ap([(_write_gt(tmp_path / "a_gtFine_instanceIds.png", ids), masks, classes,
                                       scores)]))


def _random_image(rng, h=48, w=72):
    ids = np.full((h, w), 7, np.int32)
    ids[:5] = 23
    ids[-3:] = 1  # ego vehicle: void
    for k in range(7):
        label = int(rng.choice([24, 26, 26, 33, 29]))
        y, x = int(rng.integers(0, h - 8)), int(rng.integers(0, w - 8))
        ids[y:y + int(rng.integers(4, 20)), x:x + int(rng.integers(4, 26))] = label * 1000 + k if rng.random() > 0.15 \
            else label
    train = {24: PERSON, 26: CAR, 33: 18, 29: CAR}
    masks, classes, scores = [], [], []
    for v in np.unique(ids):
        label = v // 1000 if v >= 1000 else v
        if label not in train:
            continue
        for _ in range(int(rng.integers(0, 3))):  # shifted copies: matches, duplicates, misses
            shift = (int(rng.integers(-3, 4)), int(rng.integers(-3, 4)))
            masks.append(np.roll(ids == v, shift, (0, 1)))
            classes.append(train[label] if rng.random() > 0.1 else PERSON)
            scores.append(float(rng.choice([0.3, 0.5, 0.9, rng.random()])))  # ties too
    for _ in range(2):
        masks.append(_box(ids.shape, (y := int(rng.integers(0, h - 10)), y + 10), (x := int(rng.integers(0, w - 12)), x + 12)))
        classes.append(int(rng.choice([PERSON, CAR, ROAD])))
        scores.append(float(rng.random()))
    return ids, np.stack(masks), np.array(classes), np.array(scores)


@pytest.mark.skipif(not has_cityscapesscripts(), reason="cityscapesscripts not installed")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_official_evaluator(tmp_path, seed):
    rng = np.random.default_rng(seed)
    ours, records = CityscapesInstanceAP(), []
    for i in range(3):
        ids, masks, classes, scores = _random_image(rng)
        records.append((_write_gt(tmp_path / f"c_{i}_gtFine_instanceIds.png", ids), masks, classes, scores))
        ours.update(masks, classes, scores, ids)
    mine, official = ours.compute(), official_instance_ap(records)
    assert np.isfinite(mine["matrix"]).sum() >= 10 and mine["map50"] > 0  # the data exercises the matching
    np.testing.assert_array_equal(mine["matrix"], official["matrix"])
    assert mine["map"] == official["map"] and mine["map50"] == official["map50"]


@pytest.mark.parametrize("seed", [0, 1])
def test_label_map_predictions_equal_masks(tmp_path, seed):
    """ins_seg files hold disjoint predictions as one label map: both evaluators take it as it is."""
    from irnet_fast.data.instances import instance_label_map
    rng = np.random.default_rng(seed)
    by_masks, by_label, records = CityscapesInstanceAP(), CityscapesInstanceAP(), []
    for i in range(3):
        ids, masks, classes, scores = _random_image(rng)
        disjoint = masks & (np.cumsum(masks, axis=0) == 1)  # each pixel to its first mask
        label = instance_label_map(disjoint)
        by_masks.update(disjoint, classes, scores, ids)
        by_label.update(label, classes, scores, ids)
        records.append((_write_gt(tmp_path / f"d_{i}_gtFine_instanceIds.png", ids), label, classes, scores))
    want, got = by_masks.compute(), by_label.compute()
    assert np.isfinite(want["matrix"]).sum() >= 10 and want["map50"] > 0
    np.testing.assert_array_equal(got["matrix"], want["matrix"])
    with pytest.raises(ValueError, match=r"pred_masks expected label values in \[0, 1\]"):
        CityscapesInstanceAP().update(np.full(ids.shape, 2, np.int32), [CAR], [0.5], ids)
    with pytest.raises(ValueError, match="pred_masks expected a label map of size"):
        CityscapesInstanceAP().update(np.zeros((4, 4), np.int32), [CAR], [0.5], ids)
    if has_cityscapesscripts():
        np.testing.assert_array_equal(official_instance_ap(records)["matrix"], want["matrix"])


class _Source:
    def __init__(self, has_background):
        self.has_background = has_background
        self.class_names = ("a", "b")


def test_miou_without_background():
    conf = ConfusionMatrix(3)
    # GT never 0 (every pixel has a class); predictions 0 ("no class") are misses of the GT class
    conf.update(np.array([0, 1, 1, 2, 2, 2]), np.array([1, 1, 1, 2, 2, 255]))
    # class a: TP 2, GT 3, pred 2 -> 2/3; class b: TP 2, GT 2, pred 2 -> 1; "background" 0 / 1 -> 0
    assert _miou(conf, _Source(False)) == pytest.approx((2 / 3 + 1) / 2)
    assert _miou(conf, _Source(True)) == pytest.approx((0 + 2 / 3 + 1) / 3)
    res = _semantic(conf, _Source(False))
    assert list(res["iou"]) == ["a", "b"] and res["miou"] == pytest.approx(100 * 5 / 6)
