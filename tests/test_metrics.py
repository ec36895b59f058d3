"""Metrics against hand-computed cases: confusion matrix / IoU, CAM labels, VOC instance mask AP."""
import numpy as np
import pytest

from irnet_fast.metrics import ConfusionMatrix, InstanceAP, cam_to_label, mask_iou, voc_ap


# ----------------------------------------------------------------------------------------------
# Confusion matrix


GT = np.array([[0, 0, 1],
               [1, 2, 255]])
PRED = np.array([[0, 1, 1],
                 [1, 0, 2]])
# counted (gt, pred) pairs, 255 skipped: (0,0) (0,1) (1,1) (1,1) (2,0)
# rows gt, cols pred: [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
# IoU0 = 1 / (2 + 2 - 1) = 1/3, IoU1 = 2 / (2 + 3 - 2) = 2/3, IoU2 = 0 / (1 + 0 - 0) = 0
# mIoU = (1/3 + 2/3 + 0) / 3 = 1/3; pixel accuracy = 3 / 5


def test_confusion_hand_case():
    cm = ConfusionMatrix(3).update(PRED, GT)
    np.testing.assert_array_equal(cm.matrix, [[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    assert cm.matrix.dtype == np.int64
    np.testing.assert_allclose(cm.iou(), [1 / 3, 2 / 3, 0.0])
    assert cm.miou() == pytest.approx(1 / 3)
    assert cm.pixel_accuracy() == pytest.approx(3 / 5)


def test_confusion_absent_class_is_nan_and_excluded():
    cm = ConfusionMatrix(4).update(PRED.astype(np.uint8), GT.astype(np.uint8))
    iou = cm.iou()
    assert np.isnan(iou[3])  # class 3 in neither GT nor prediction: 0 / 0
    np.testing.assert_allclose(iou[:3], [1 / 3, 2 / 3, 0.0])
    assert cm.miou() == pytest.approx(1 / 3)  # nan-mean over the three defined classes
    empty = ConfusionMatrix(4)
    assert np.isnan(empty.iou()).all() and np.isnan(empty.miou()) and np.isnan(empty.pixel_accuracy())
    # all pixels ignored: nothing counted
    assert ConfusionMatrix(3).update(np.zeros((2, 2), int), np.full((2, 2), 255)).matrix.sum() == 0


def test_confusion_merge_and_add():
    whole = ConfusionMatrix(3).update(PRED, GT)
    a = ConfusionMatrix(3).update(PRED[:1], GT[:1])
    b = ConfusionMatrix(3).update(PRED[1:], GT[1:])
    s = a + b
    np.testing.assert_array_equal(s.matrix, whole.matrix)
    np.testing.assert_array_equal(a.matrix, [[1, 1, 0], [0, 1, 0], [0, 0, 0]])  # + left a unchanged
    a.merge(b)
    np.testing.assert_array_equal(a.matrix, whole.matrix)
    with pytest.raises(ValueError, match="num_classes"):
        a.merge(ConfusionMatrix(4))


def test_confusion_matches_bruteforce_and_errors():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 21, (375, 500))
    gt[rng.random(gt.shape) < 0.1] = 255
    pred = rng.integers(0, 21, (375, 500)).astype(np.uint8)
    cm = ConfusionMatrix(21).update(pred, gt)
    ref = np.zeros((21, 21), np.int64)
    keep = gt != 255
    np.add.at(ref, (gt[keep], pred[keep].astype(np.int64)), 1)
    np.testing.assert_array_equal(cm.matrix, ref)

    with pytest.raises(ValueError, match=r"pred values expected in \[0, 21\), got values in \[255, 255\]"):
        ConfusionMatrix(21).update(np.full((2, 2), 255), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="gt values expected"):
        ConfusionMatrix(21).update(np.zeros((2, 2), int), np.full((2, 2), 30))
    with pytest.raises(ValueError, match=r"pred expected the shape of gt \(2, 2\), got \(2, 3\)"):
        ConfusionMatrix(21).update(np.zeros((2, 3), int), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="pred expected an integer array, got dtype float"):
        ConfusionMatrix(21).update(np.zeros((2, 2)), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="num_classes"):
        ConfusionMatrix(0)


# ----------------------------------------------------------------------------------------------
# CAM labels


def test_cam_to_label_hand_case():
    keys = np.array([4, 11])
    cams = np.zeros((2, 1, 4), np.float32)
    cams[:, 0, 0] = (0.10, 0.05)  # both below 0.15 -> background 0
    cams[:, 0, 1] = (0.20, 0.30)  # second CAM wins -> key 11 + 1 = 12
    cams[:, 0, 2] = (0.15, 0.10)  # equal to the threshold: background comes first in the argmax -> 0
    cams[:, 0, 3] = (0.50, 0.50)  # tie between CAMs: the first -> 4 + 1 = 5
    out = cam_to_label(cams, keys)
    assert out.dtype == np.uint8 and out.shape == (1, 4)
    np.testing.assert_array_equal(out, [[0, 12, 0, 5]])


def test_cam_to_label_matches_reference_formula_and_k0():
    rng = np.random.default_rng(1)
    cams = rng.random((3, 20, 30)).astype(np.float32) ** 4
    keys = np.array([0, 7, 19])
    # the reference: pad a constant channel first, argmax, index [0] + keys + 1
    padded = np.pad(cams, ((1, 0), (0, 0), (0, 0)), mode="constant", constant_values=0.15)
    ref = np.pad(keys + 1, (1, 0), mode="constant")[np.argmax(padded, axis=0)]
    np.testing.assert_array_equal(cam_to_label(cams, keys, 0.15), ref)
    np.testing.assert_array_equal(cam_to_label(np.zeros((0, 5, 6)), np.array([])), np.zeros((5, 6), np.uint8))
    with pytest.raises(ValueError, match=r"keys expected shape \(3,\)"):
        cam_to_label(cams, [1, 2])
    with pytest.raises(ValueError, match="cams expected"):
        cam_to_label(cams[0], [1])


# ----------------------------------------------------------------------------------------------
# Instance AP: helpers


def box(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def stack(*masks, size=(10, 10)):
    return np.stack(masks) if masks else np.zeros((0,) + size, bool)


A = box(10, 10, 0, 4, 0, 4)    # 16 px
B = box(10, 10, 6, 10, 6, 10)  # 16 px, disjoint from A
NOWHERE = box(10, 10, 0, 2, 8, 10)  # overlaps neither A nor B


def ap_of(ap, cls=0, thresh=0.5):
    return ap.compute()["ap"][thresh][cls]


def test_voc_ap_function():
    # single TP: mrec [0, 1, 1], mpre [1, 1, 0] -> 1
    assert voc_ap([1.0], [1.0]) == 1.0
    # FP then TP (1 GT): prec [0, .5], rec [0, 1]; precision from the right -> .5 over recall 0..1
    assert voc_ap([0.0, 0.5], [0.0, 1.0]) == 0.5
    assert voc_ap([], []) == 0.0


def test_mask_iou():
    a = stack(box(4, 4, 0, 2, 0, 2), box(4, 4, 0, 4, 0, 4), np.zeros((4, 4), bool))
    b = stack(box(4, 4, 0, 2, 0, 4), np.zeros((4, 4), bool))
    # a0 (4 px) vs b0 (8 px): inter 4, union 8 -> .5; a1 (16) vs b0: 8 / 16; empty vs empty -> 0
    np.testing.assert_allclose(mask_iou(a, b), [[0.5, 0], [0.5, 0], [0, 0]])
    assert mask_iou(a[:0], b).shape == (0, 2)


# ----------------------------------------------------------------------------------------------
# Instance AP: hand-computed cases


def test_ap_perfect_predictions():
    ap = InstanceAP(num_classes=3)
    ap.update(stack(A, B), [0, 2], [0.9, 0.3], stack(A, B), [0, 2])
    ap.update(stack(B), [0], [0.1], stack(B), [0])
    res = ap.compute()
    for t in (0.5, 0.7):
        np.testing.assert_array_equal(res["ap"][t][[0, 2]], [1.0, 1.0])
        assert np.isnan(res["ap"][t][1])  # no GT of class 1
        assert res["map"][t] == 1.0
    np.testing.assert_array_equal(res["num_gt"], [2, 0, 1])


def test_ap_fp_ranked_above_tp():
    # 1 GT; ranking FP (0.9), TP (0.8): prec [0, 1/2], rec [0, 1]
    # all-points: precision made monotone from the right = 1/2 on recall 0 -> 1: AP = 1/2
    ap = InstanceAP(1)
    ap.update(stack(NOWHERE, A), [0, 0], [0.9, 0.8], stack(A), [0])
    assert ap_of(ap) == pytest.approx(0.5)
    # 2 GT; TP (0.9), FP (0.8), TP (0.7): prec [1, 1/2, 2/3], rec [1/2, 1/2, 1]
    # AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    ap = InstanceAP(1)
    ap.update(stack(A, NOWHERE, B), [0, 0, 0], [0.9, 0.8, 0.7], stack(A, B), [0, 0])
    assert ap_of(ap) == pytest.approx(5 / 6)


def test_ap_duplicate_detection_is_fp():
    # GT A, B; A detected twice (0.9 TP, 0.8 duplicate -> FP), B at 0.7 (TP)
    # prec [1, 1/2, 2/3], rec [1/2, 1/2, 1] -> AP = 1/2 + 1/2 * 2/3 = 5/6
    ap = InstanceAP(1)
    ap.update(stack(A, A, B), [0, 0, 0], [0.9, 0.8, 0.7], stack(A, B), [0, 0])
    assert ap_of(ap) == pytest.approx(5 / 6)
    prec, rec = ap.precision_recall(0)
    np.testing.assert_allclose(prec, [1, 1 / 2, 2 / 3])
    np.testing.assert_allclose(rec, [1 / 2, 1 / 2, 1])


def test_ap_no_fallback_to_second_best_gt():
    # chainercv matches each prediction to its best-IoU GT only: p2 overlaps A (IoU 12/16 = .75)
    # more than B, A is taken by p1 -> p2 is a FP even though it also covers part of B.
    # 2 GT: TP, FP -> prec [1, 1/2], rec [1/2, 1/2]; AP = 1/2 * 1 = 1/2
    p2 = box(10, 10, 0, 3, 0, 4) | box(10, 10, 9, 10, 9, 10)  # 12 px of A + 1 px of B
    ap = InstanceAP(1)
    ap.update(stack(A, p2), [0, 0], [0.9, 0.8], stack(A, B), [0, 0])
    assert ap_of(ap) == pytest.approx(0.5)


def test_ap_ties_in_chainercv_order():
    # equal scores are ranked as chainercv's argsort()[::-1] ranks them; NumPy's sort is stable
    # on short arrays, so a few ties come out in reverse order, once within the image and once
    # more over the images. 1 GT.
    # one image: reversed twice, input order: FP listed first -> FP, TP -> AP 1/2; TP first -> 1
    ap = InstanceAP(1)
    ap.update(stack(NOWHERE, A), [0, 0], [0.5, 0.5], stack(A), [0])
    assert ap_of(ap) == pytest.approx(0.5)
    ap = InstanceAP(1)
    ap.update(stack(A, NOWHERE), [0, 0], [0.5, 0.5], stack(A), [0])
    assert ap_of(ap) == pytest.approx(1.0)
    # across images: reverse update order (image 2's TP before image 1's FP) -> AP 1
    ap = InstanceAP(1)
    ap.update(stack(NOWHERE), [0], [0.5], stack(size=(10, 10)), np.zeros(0, int))
    ap.update(stack(A), [0], [0.5], stack(A), [0])
    assert ap_of(ap) == pytest.approx(1.0)
    # two identical detections of one GT with one score: within the image the second given is
    # matched first (the TP, the first given a duplicate FP), then the ranking over the images
    # reverses the tie again: FP, TP
    ap = InstanceAP(1)
    ap.update(stack(A, A), [0, 0], [0.5, 0.5], stack(A), [0])
    np.testing.assert_allclose(ap.precision_recall(0)[0], [0, 0.5])
    # float32 scores are ranked as float32, as chainercv ranks what it is given
    ap = InstanceAP(1).update(stack(NOWHERE), [0], np.float32([0.1]), stack(size=(10, 10)), np.zeros(0, int))
    ap.update(stack(A), [0], np.float32([0.1]), stack(A), [0])
    assert ap._scores[0][0].dtype == np.float32 and ap_of(ap) == pytest.approx(1.0)


def _chainercv_voc_ap(images, iou_thresh):
    """A transcription of chainercv's ``eval_instance_segmentation_voc`` (its
    ``calc_instance_segmentation_voc_prec_rec`` and the all-points
    ``calc_instance_segmentation_voc_ap``), dictionaries and lists as there."""
    from collections import defaultdict

    def iou_of(a, b):
        out = np.zeros((len(a), len(b)), dtype=np.float32)
        for i, m in enumerate(a):
            for j, g in enumerate(b):
                out[i, j] = np.logical_and(m, g).sum() / np.logical_or(m, g).sum()
        return out

    n_pos, score, match = defaultdict(int), defaultdict(list), defaultdict(list)
    for pred_mask, pred_label, pred_score, gt_mask, gt_label, gt_difficult in images:
        for lb in np.unique(np.concatenate((pred_label, gt_label)).astype(int)):
            keep = pred_label == lb
            pred_mask_l, pred_score_l = pred_mask[keep], pred_score[keep]
            order = pred_score_l.argsort()[::-1]
            pred_mask_l, pred_score_l = pred_mask_l[order], pred_score_l[order]
            gt_keep = gt_label == lb
            gt_mask_l, gt_difficult_l = gt_mask[gt_keep], gt_difficult[gt_keep]
            n_pos[lb] += np.logical_not(gt_difficult_l).sum()
            score[lb].extend(pred_score_l)
            if len(pred_mask_l) == 0:
                continue
            if len(gt_mask_l) == 0:
                match[lb].extend((0,) * pred_mask_l.shape[0])
                continue
            iou = iou_of(pred_mask_l, gt_mask_l)
            gt_index = iou.argmax(axis=1)
            gt_index[iou.max(axis=1) < iou_thresh] = -1
            selec = np.zeros(gt_mask_l.shape[0], dtype=bool)
            for gt_idx in gt_index:
                if gt_idx >= 0:
                    if gt_difficult_l[gt_idx]:
                        match[lb].append(-1)
                    else:
                        match[lb].append(0 if selec[gt_idx] else 1)
                    selec[gt_idx] = True
                else:
                    match[lb].append(0)
    n_fg_class = max(n_pos.keys()) + 1
    ap = np.full(n_fg_class, np.nan)
    for lb in n_pos.keys():
        score_l = np.array(score[lb])
        match_l = np.array(match[lb], dtype=np.int8)[score_l.argsort()[::-1]]
        tp, fp = np.cumsum(match_l == 1), np.cumsum(match_l == 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            prec = tp / (fp + tp)
        if n_pos[lb] == 0:
            continue
        rec = tp / n_pos[lb]
        mpre = np.concatenate(([0], np.nan_to_num(prec), [0]))
        mrec = np.concatenate(([0], rec, [1]))
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]
        i = np.where(mrec[1:] != mrec[:-1])[0]
        ap[lb] = np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])
    return ap


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ap_many_ties_equal_chainercv(seed, dtype):
    """Detections with a handful of distinct scores (fragments at 0, as detect_instance gives),
    many per class and image, against the transcription: the same per-class AP."""
    rng = np.random.default_rng(100 + seed)
    num_classes = 3
    images = []
    for _ in range(30):
        pm, pl, _, gm, gl, gd = _random_image(rng, num_classes)
        extra = int(rng.integers(0, 20))  # fragments of score 0
        frags = stack(*[box(12, 14, *sorted(rng.integers(0, 12, 2)), *sorted(rng.integers(0, 14, 2)))
                        for _ in range(extra)], size=(12, 14))
        pm = np.concatenate([pm, frags])
        pl = np.concatenate([pl, rng.integers(0, num_classes, extra)])
        ps = np.concatenate([rng.integers(0, 3, len(pm) - extra) / 2.0, np.zeros(extra)]).astype(dtype)
        images.append((pm, pl, ps, gm, gl, gd))
    ap = InstanceAP(num_classes, iou_thresholds=(0.5, 0.7))
    for img in images:
        ap.update(*img)
    res = ap.compute()
    for t in (0.5, 0.7):
        expect = _chainercv_voc_ap(images, t)
        np.testing.assert_allclose(res["ap"][t][:len(expect)], expect, rtol=0, atol=1e-12, equal_nan=True)


def test_ap_class_without_predictions_is_zero_and_counted():
    ap = InstanceAP(2)
    ap.update(stack(A), [0], [0.9], stack(A, B), [0, 1])
    res = ap.compute()
    np.testing.assert_array_equal(res["ap"][0.5], [1.0, 0.0])
    assert res["map"][0.5] == pytest.approx(0.5)  # (1 + 0) / 2


def test_ap_class_without_gt_is_nan_and_excluded():
    ap = InstanceAP(2)
    ap.update(stack(A, B), [0, 1], [0.9, 0.8], stack(A), [0])
    res = ap.compute()
    assert res["ap"][0.5][0] == 1.0 and np.isnan(res["ap"][0.5][1])
    assert res["map"][0.5] == 1.0
    assert np.isnan(InstanceAP(2).compute()["map"][0.5])  # nothing at all


def test_ap_iou_exactly_at_threshold_counts():
    gt = box(10, 10, 0, 1, 0, 10)  # 10 px
    # 5 of its pixels: IoU 5 / 10 = 0.5 -> TP at 0.5 (>=), FP at 0.7
    ap = InstanceAP(1)
    ap.update(stack(box(10, 10, 0, 1, 0, 5)), [0], [1.0], stack(gt), [0])
    assert ap_of(ap, thresh=0.5) == 1.0 and ap_of(ap, thresh=0.7) == 0.0
    # 7 of its pixels: IoU 7 / 10 = 0.7 -> TP at 0.7 as well
    ap = InstanceAP(1)
    ap.update(stack(box(10, 10, 0, 1, 0, 7)), [0], [1.0], stack(gt), [0])
    assert ap_of(ap, thresh=0.7) == 1.0
    # 6 px + 1 px outside: IoU 6 / 11 < 0.7 and >= 0.5
    ap = InstanceAP(1, iou_thresholds=(0.5, 0.7))
    ap.update(stack(box(10, 10, 0, 1, 0, 6) | box(10, 10, 5, 6, 0, 1)), [0], [1.0], stack(gt), [0])
    res = ap.compute()
    assert res["ap"][0.5][0] == 1.0 and res["ap"][0.7][0] == 0.0


def test_ap_thresholds_differ():
    # GT A (16 px) and B (16 px). pA covers 12 px of A (IoU .75), pB covers 10 of B + 6 outside
    # (IoU 10 / 22 < .5 at both). At 0.5: TP, FP -> prec [1, 1/2], rec [1/2, 1/2] -> AP 1/2.
    # pA2 covers 9 of A (IoU 9 / 16 = .5625): at 0.5 TP, at 0.7 FP.
    pA = box(10, 10, 0, 3, 0, 4)
    pB = box(10, 10, 6, 10, 6, 8) | box(10, 10, 6, 7, 8, 10) | box(10, 10, 0, 6, 9, 10)  # 8 + 2 in B, 6 out
    pA2 = box(10, 10, 0, 3, 0, 3)
    np.testing.assert_allclose(mask_iou(stack(pA, pB, pA2), stack(A, B)),
                               [[0.75, 0], [0, 10 / 22], [9 / 16, 0]])
    ap = InstanceAP(2)
    ap.update(stack(pA, pB), [0, 0], [0.9, 0.8], stack(A, B), [0, 0])
    ap.update(stack(pA2), [1], [0.9], stack(A), [1])
    res = ap.compute()
    assert res["ap"][0.5][0] == pytest.approx(0.5) and res["ap"][0.7][0] == pytest.approx(0.5)
    assert res["ap"][0.5][1] == 1.0 and res["ap"][0.7][1] == 0.0
    assert res["map"][0.5] == pytest.approx(0.75) and res["map"][0.7] == pytest.approx(0.25)


def test_ap_difficult_gt():
    # class 0: GT A (normal) and B (difficult). Ranked: on B (0.9, ignored), FP (0.8), on A (0.7, TP)
    # with the flag: 1 positive, counted ranking FP, TP -> prec [nan, 0, 1/2], rec [0, 0, 1] -> 1/2
    # without: 2 positives, TP, FP, TP -> 1/2 + 1/2 * 2/3 = 5/6
    args = (stack(B, NOWHERE, A), [0, 0, 0], [0.9, 0.8, 0.7], stack(A, B), [0, 0])
    ap = InstanceAP(1).update(*args, gt_difficult=[False, True])
    assert ap_of(ap) == pytest.approx(0.5)
    assert ap.compute()["num_gt"][0] == 1
    assert ap_of(InstanceAP(1).update(*args)) == pytest.approx(5 / 6)
    # only difficult GT: no positives -> NaN
    ap = InstanceAP(1).update(stack(A), [0], [0.9], stack(A), [0], gt_difficult=[True])
    assert np.isnan(ap_of(ap))


def test_ap_merge_equals_single_pass():
    ap1, ap2, whole = InstanceAP(1), InstanceAP(1), InstanceAP(1)
    img1 = (stack(NOWHERE), [0], [0.9], stack(A), [0])
    img2 = (stack(B), [0], [0.8], stack(B), [0])
    ap1.update(*img1)
    ap2.update(*img2)
    whole.update(*img1).update(*img2)
    # 2 GT over both images: FP, TP -> prec [0, 1/2], rec [0, 1/2] -> AP 1/4
    assert ap_of(ap1 + ap2) == ap_of(whole) == pytest.approx(0.25)
    ap1.merge(ap2)
    assert ap_of(ap1) == pytest.approx(0.25)


def test_ap_errors():
    ap = InstanceAP(2)
    with pytest.raises(ValueError, match=r"pred_labels expected 0-based class ids in \[0, 2\)"):
        ap.update(stack(A), [2], [0.5], stack(A), [0])
    with pytest.raises(ValueError, match=r"pred_scores expected a real array of shape \(1,\), got shape \(2,\)"):
        ap.update(stack(A), [0], [0.5, 0.1], stack(A), [0])
    with pytest.raises(ValueError, match=r"gt_masks expected a bool array of shape \(N, H, W\), got shape \(10, 10\)"):
        ap.update(stack(A), [0], [0.5], A, [0])
    with pytest.raises(ValueError, match=r"pred_masks expected masks of size \(10, 10\)"):
        ap.update(np.zeros((1, 5, 5), bool), [0], [0.5], stack(A), [0])
    with pytest.raises(ValueError, match="gt_difficult"):
        ap.update(stack(A), [0], [0.5], stack(A), [0], gt_difficult=[True, False])
    with pytest.raises(ValueError, match="iou_thresholds"):
        InstanceAP(2, iou_thresholds=(1.5,))


# ----------------------------------------------------------------------------------------------
# Instance AP: random cases against an independent brute force


def _bruteforce_ap(images, num_classes, thresh):
    """Per-prediction loops over pixel sets; AP as the mean over GT of the best precision at or
    after the rank where each is found (the all-points area, enumerated recall step by step)."""
    out = []
    for c in range(num_classes):
        ranked, n_pos = [], 0
        for pm, pl, ps, gm, gl, gd in images:
            gts = [(set(zip(*np.nonzero(gm[k]))), bool(gd[k])) for k in range(len(gl)) if gl[k] == c]
            n_pos += sum(not d for _, d in gts)
            mine = np.flatnonzero(np.asarray(pl) == c)
            preds = mine[np.asarray(ps)[mine].argsort()[::-1]]  # chainercv's order (ties included)
            used = [False] * len(gts)
            for k in preds:
                px = set(zip(*np.nonzero(pm[k])))
                best, best_j = -1.0, -1
                for j, (g, _) in enumerate(gts):
                    union = len(px | g)
                    iou = len(px & g) / union if union else 0.0
                    if iou > best:
                        best, best_j = iou, j
                if best_j >= 0 and best >= thresh:
                    if gts[best_j][1]:
                        kind = None
                    else:
                        kind = not used[best_j]
                    used[best_j] = True
                else:
                    kind = False
                ranked.append((ps[k], kind))
        if n_pos == 0:
            out.append(np.nan)
            continue
        order = np.array([r[0] for r in ranked]).argsort()[::-1] if ranked else []
        seq = [ranked[i][1] for i in order if ranked[i][1] is not None]
        precs, tp = [], 0
        for i, kind in enumerate(seq):
            tp += kind
            precs.append(tp / (i + 1))
        total = 0.0
        for i, kind in enumerate(seq):
            if kind:  # recall rises by 1 / n_pos here; interpolated precision = best from here on
                total += max(precs[i:]) / n_pos
        out.append(total)
    return np.array(out)


def _random_image(rng, num_classes, size=(12, 14)):
    h, w = size

    def rnd_box():
        y0, x0 = rng.integers(0, h - 2), rng.integers(0, w - 2)
        return box(h, w, y0, y0 + rng.integers(2, 7), x0, x0 + rng.integers(2, 7))

    g = int(rng.integers(0, 4))
    gm = stack(*[rnd_box() for _ in range(g)], size=size)
    gl = rng.integers(0, num_classes, g)
    gd = rng.random(g) < 0.2
    preds = []
    for k in range(g):  # jittered copies of the GT, sometimes twice
        for _ in range(int(rng.integers(0, 3))):
            m = gm[k] ^ (rng.random(size) < 0.03)
            preds.append((m, gl[k] if rng.random() < 0.85 else rng.integers(0, num_classes)))
    for _ in range(int(rng.integers(0, 3))):
        preds.append((rnd_box(), rng.integers(0, num_classes)))
    pm = stack(*[m for m, _ in preds], size=size)
    pl = np.array([l for _, l in preds], np.int64)
    ps = rng.integers(0, 6, len(preds)) / 5.0  # few distinct scores: many ties
    return pm, pl, ps, gm, gl, gd


@pytest.mark.parametrize("seed", range(4))
def test_ap_random_against_bruteforce(seed):
    rng = np.random.default_rng(seed)
    num_classes = 3
    images = [_random_image(rng, num_classes) for _ in range(12)]
    ap = InstanceAP(num_classes, iou_thresholds=(0.3, 0.5, 0.7))
    for img in images:
        ap.update(*img[:5], gt_difficult=img[5])
    res = ap.compute()
    for t in (0.3, 0.5, 0.7):
        np.testing.assert_allclose(res["ap"][t], _bruteforce_ap(images, num_classes, t), equal_nan=True)


# ----------------------------------------------------------------------------------------------
# With the VOC reader's GT (SegmentationObject + SegmentationClass)


def test_with_voc_reader_gt(tmp_path):
    from irnet_fast.data import synthetic
    from irnet_fast.data.voc import VOC12

    root = synthetic.generate(tmp_path, num_train=3, num_val=0, size=(32, 40), num_classes=4)
    voc = VOC12(root, "train")
    ap, cm = InstanceAP(20), ConfusionMatrix(21)
    present = set()
    for name in voc.ids:
        masks, classes = voc.instance_label(name)
        present.update(classes.tolist())
        ap.update(masks, classes, np.linspace(1, 0.5, len(classes)), masks, classes)
        gt = voc.seg_label(name)
        cm.update(np.where(gt == 255, 0, gt), gt)
    res = ap.compute()
    assert sorted(np.flatnonzero(~np.isnan(res["ap"][0.5]))) == sorted(present)
    assert res["map"][0.5] == 1.0 and res["map"][0.7] == 1.0
    assert cm.miou() == 1.0
