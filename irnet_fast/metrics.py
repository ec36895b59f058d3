"""Evaluation metrics of the reference (numpy only): semantic mIoU, CAM labels, VOC instance mask AP.

- :class:`ConfusionMatrix`: the ``C x C`` pixel confusion matrix (rows: GT, columns: prediction),
  GT ``ignore_index`` skipped; ``iou()`` = TP / (GT + Pred - TP) per class (NaN where a class is
  absent from both), ``miou()`` the NaN-mean. Shards from several processes add up (``merge``,
  ``+``).
- :func:`cam_to_label`: CAMs to a label map as the reference evaluates them (a constant
  background channel of ``bg_thres`` = 0.15, argmax).
- :class:`InstanceAP`: PASCAL VOC instance mask AP at IoU 0.5 and 0.7, the semantics of chainercv's
  ``eval_instance_segmentation_voc`` (which the reference used), area under the PR curve with
  all-points interpolation (VOC 2010+).

GT instances of a VOC devkit come from
:meth:`irnet_fast.data.voc.VOC12.instance_label` (``SegmentationObject`` ids, classes from
``SegmentationClass``), which is what :meth:`InstanceAP.update` takes as ``gt_masks, gt_labels``.
"""
from __future__ import annotations

import warnings
from typing import Dict, List, Optional, Sequence

import numpy as np

from ._checks import check_array

__all__ = ["ConfusionMatrix", "cam_to_label", "mask_iou", "voc_ap", "InstanceAP"]


def _int_array(x, *, op: str, name: str) -> np.ndarray:
    return check_array(x, op=op, name=name, kind="int")


# ----------------------------------------------------------------------------------------------
# Semantic segmentation


class ConfusionMatrix:
    """Pixel confusion matrix ``matrix[gt, pred]`` (int64), accumulated over images.

    Args:
        num_classes: C (21 for VOC: background + 20).
        ignore_index: GT value that is skipped (255, the VOC void); ``None``: none.
    """

    def __init__(self, num_classes: int = 21, ignore_index: Optional[int] = 255):
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"ConfusionMatrix(): num_classes expected an integer >= 1, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    def reset(self) -> None:
        self.matrix[...] = 0

    def update(self, pred, gt) -> "ConfusionMatrix":
        """Add the pixels of ``pred`` and ``gt`` (integer arrays of one shape, e.g. ``(H, W)``).

        ``gt == ignore_index`` pixels are skipped; any other value of ``gt`` and every value of
        ``pred`` must lie in ``[0, num_classes)`` (``ValueError`` otherwise).
        """
        op = "ConfusionMatrix.update"
        pred = _int_array(pred, op=op, name="pred")
        gt = _int_array(gt, op=op, name="gt")
        if pred.shape != gt.shape:
            raise ValueError(f"{op}(): pred expected the shape of gt {gt.shape}, got {pred.shape}")
        n = self.num_classes
        pred = pred.ravel()
        gt = gt.ravel()
        if self.ignore_index is not None:
            keep = gt != self.ignore_index
            if not keep.all():
                pred, gt = pred[keep], gt[keep]
        if pred.size == 0:
            return self
        for name, a in (("pred", pred), ("gt", gt)):
            lo, hi = int(a.min()), int(a.max())
            if lo < 0 or hi >= n:
                extra = "" if name == "pred" or self.ignore_index is None else f" or {self.ignore_index} (ignored)"
                raise ValueError(f"{op}(): {name} values expected in [0, {n}){extra}, got values in [{lo}, {hi}]")
        # one bincount over gt * C + pred: the fast path (a VOC image in about a millisecond)
        idx = gt.astype(np.int64) * n + pred.astype(np.int64)
        self.matrix += np.bincount(idx, minlength=n * n).reshape(n, n)
        return self

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add ``other``'s counts into this one (in place) and return ``self``."""
        if not isinstance(other, ConfusionMatrix):
            raise ValueError(f"ConfusionMatrix.merge(): other expected a ConfusionMatrix, got {type(other).__name__}")
        if other.num_classes != self.num_classes:
            raise ValueError(f"ConfusionMatrix.merge(): other expected num_classes {self.num_classes}, "
                             f"got {other.num_classes}")
        self.matrix += other.matrix
        return self

    def __add__(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        out = ConfusionMatrix(self.num_classes, self.ignore_index)
        out.matrix = self.matrix.copy()
        return out.merge(other)

    def __iadd__(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        return self.merge(other)

    def iou(self) -> np.ndarray:
        """Per-class IoU ``float64 (C,)`` = TP / (GT + Pred - TP); NaN where that is 0 / 0."""
        tp = np.diag(self.matrix).astype(np.float64)
        denom = self.matrix.sum(axis=1) + self.matrix.sum(axis=0) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)

    def miou(self) -> float:
        """Mean IoU over the classes with a defined IoU (NaN if none)."""
        iou = self.iou()
        return float(np.mean(iou[~np.isnan(iou)])) if (~np.isnan(iou)).any() else float("nan")

    def pixel_accuracy(self) -> float:
        """Fraction of counted pixels predicted right (NaN with no pixels)."""
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else float("nan")

    def __repr__(self) -> str:
        return (f"ConfusionMatrix(num_classes={self.num_classes}, pixels={int(self.matrix.sum())}, "
                f"miou={self.miou():.4f})")


def cam_to_label(cams, keys, bg_thres: float = 0.15) -> np.ndarray:
    """CAMs ``(K, H, W)`` of the classes ``keys`` (0-based) to a ``uint8 (H, W)`` label map.

    As the reference evaluates CAMs: a constant background channel ``bg_thres`` is put first, the
    argmax taken (first wins on ties, so a score equal to ``bg_thres`` is background) and mapped
    through ``[0] + (keys + 1)``. ``K = 0`` gives all background; NaN scores count as background.
    """
    op = "cam_to_label"
    cams = np.asarray(cams)
    if cams.ndim != 3 or cams.dtype.kind not in "fiub":
        raise ValueError(f"{op}(): cams expected a real array of shape (K, H, W), got shape {cams.shape} "
                         f"dtype {cams.dtype}")
    keys = np.asarray(keys)
    # an empty keys list (K = 0) may come as float from np.array([])
    keys = np.zeros(0, np.int64) if keys.size == 0 else _int_array(keys, op=op, name="keys")
    if keys.shape != (cams.shape[0],):
        raise ValueError(f"{op}(): keys expected shape ({cams.shape[0]},) (one per CAM), got {keys.shape}")
    if keys.size and (keys.min() < 0 or keys.max() > 253):
        raise ValueError(f"{op}(): keys expected 0-based class ids in [0, 253], got [{keys.min()}, {keys.max()}]")
    h, w = cams.shape[1:]
    if cams.shape[0] == 0:
        return np.zeros((h, w), np.uint8)
    # argmax over [bg, cams] without building the padded copy: bg wins unless a CAM is strictly above
    best = cams.argmax(axis=0)
    top = np.take_along_axis(cams, best[None], axis=0)[0]
    lut = (keys.astype(np.int64) + 1).astype(np.uint8)
    out = lut[best]
    out[~(top > bg_thres)] = 0
    return out


# ----------------------------------------------------------------------------------------------
# Instance segmentation: PASCAL VOC mask AP


def _masks(x, *, op: str, name: str) -> np.ndarray:
    return check_array(x, op=op, name=name, dims=("N", "H", "W"), kind="bool").astype(bool, copy=False)


def mask_iou(a, b) -> np.ndarray:
    """IoU ``float64 (P, G)`` between the masks ``a (P, H, W)`` and ``b (G, H, W)`` (0 where both are empty)."""
    a = _masks(a, op="mask_iou", name="a")
    b = _masks(b, op="mask_iou", name="b")
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"mask_iou(): a expected masks of size {b.shape[1:]} (those of b), got {a.shape[1:]}")
    p, g = a.shape[0], b.shape[0]
    if p == 0 or g == 0:
        return np.zeros((p, g))
    a = a.reshape(p, -1)
    b = b.reshape(g, -1)
    area_a = np.count_nonzero(a, axis=1)
    area_b = np.count_nonzero(b, axis=1)
    # the intersection is 0 outside b's pixels: the matrix product runs over those columns only
    cols = np.flatnonzero(b.any(axis=0))
    # float32 sums of 0/1 products are exact below 2**24 terms; BLAS makes this fast
    dtype = np.float32 if cols.size < 2 ** 24 else np.float64
    inter = (a[:, cols].astype(dtype) @ b[:, cols].astype(dtype).T).astype(np.int64)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def voc_ap(precision, recall) -> float:
    """Area under the PR curve, all-points interpolation (VOC 2010+).

    Sentinels ``(0, 0)`` and ``(recall 1, precision 0)`` are added, NaN precisions count as 0, the
    precision is made non-increasing from the right, and ``sum (r[i+1] - r[i]) * p[i+1]`` is taken
    where the recall changes.
    """
    prec = np.nan_to_num(np.asarray(precision, np.float64), nan=0.0)
    rec = np.asarray(recall, np.float64)
    if prec.shape != rec.shape or prec.ndim != 1:
        raise ValueError(f"voc_ap(): precision and recall expected 1-D arrays of one length, got shapes "
                         f"{prec.shape} and {rec.shape}")
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def _chainercv_order(scores: np.ndarray) -> np.ndarray:
    """Highest score first, exactly as chainercv's ``eval_instance_segmentation_voc`` orders."""
    return scores.argsort()[::-1]


class InstanceAP:
    """PASCAL VOC instance mask AP (chainercv's ``eval_instance_segmentation_voc`` semantics).

    Per image and class, predictions are taken by score, highest first, and each is matched to
    the GT instance of its class with the highest mask IoU (the first one on IoU ties). With IoU
    ``>= thresh``: a not yet matched GT makes it a TP (and the GT matched), an already matched one
    a FP (duplicate), a *difficult* GT neither; below ``thresh`` it is a FP. Over all images the
    predictions of a class are ranked by score for cumulative precision / recall; the AP is
    :func:`voc_ap`. A class with (non-difficult) GT but no prediction has AP 0, one without GT
    AP NaN (left out of the mAP).

    Both rankings (within an image, then over the images in ``update`` order) are chainercv's
    ``scores.argsort()[::-1]`` on the scores in their own dtype (float16/32/64 kept, others as
    float64): the same NumPy call, so tied scores (``detect_instance`` gives small fragments 0)
    come out in the same order as chainercv's, e.g. reverse input order for a few ties. Ties
    decide which of the tied detections count first, which moves the AP.

    Args:
        num_classes: number of (foreground, 0-based) classes; 20 for VOC.
        iou_thresholds: the IoU thresholds evaluated at once.
    """

    def __init__(self, num_classes: int = 20, iou_thresholds: Sequence[float] = (0.5, 0.7)):
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"InstanceAP(): num_classes expected an integer >= 1, got {num_classes!r}")
        ths = tuple(float(t) for t in iou_thresholds)
        if not ths or any(not 0.0 <= t <= 1.0 for t in ths):
            raise ValueError(f"InstanceAP(): iou_thresholds expected numbers in [0, 1], got {iou_thresholds!r}")
        self.num_classes = int(num_classes)
        self.iou_thresholds = ths
        self.reset()

    def reset(self) -> None:
        c = self.num_classes
        self.num_gt = np.zeros(c, np.int64)  # non-difficult GT instances per class
        self._scores: List[List[np.ndarray]] = [[] for _ in range(c)]
        # per threshold, per class: 1 TP, 0 FP, -1 ignored (matched a difficult GT)
        self._match: List[List[List[np.ndarray]]] = [[[] for _ in range(c)] for _ in self.iou_thresholds]

    def update(self, pred_masks, pred_labels, pred_scores, gt_masks, gt_labels, gt_difficult=None) -> "InstanceAP":
        """Add one image: predictions ``(P, H, W)`` bool, ``(P,)`` 0-based classes, ``(P,)`` scores;
        GT ``(G, H, W)`` bool, ``(G,)`` 0-based classes, optional ``(G,)`` bool difficult flags."""
        op = "InstanceAP.update"
        pm = _masks(pred_masks, op=op, name="pred_masks")
        gm = _masks(gt_masks, op=op, name="gt_masks")
        p, g = pm.shape[0], gm.shape[0]
        pl = self._labels(pred_labels, p, op, "pred_labels")
        gl = self._labels(gt_labels, g, op, "gt_labels")
        ps = np.asarray(pred_scores)
        if ps.dtype.kind not in "fiub" or ps.shape != (p,):
            raise ValueError(f"{op}(): pred_scores expected a real array of shape ({p},), got shape {ps.shape} "
                             f"dtype {ps.dtype}")
        if ps.dtype.kind != "f":
            ps = ps.astype(np.float64)
        if not np.isfinite(ps).all():
            raise ValueError(f"{op}(): pred_scores expected finite values, got {ps[~np.isfinite(ps)][:3]}")
        if gt_difficult is None:
            gd = np.zeros(g, bool)
        else:
            gd = np.asarray(gt_difficult)
            if gd.shape != (g,) or gd.dtype.kind not in "bui":
                raise ValueError(f"{op}(): gt_difficult expected a bool array of shape ({g},), got shape "
                                 f"{gd.shape} dtype {gd.dtype}")
            gd = gd.astype(bool)
        if p and g and pm.shape[1:] != gm.shape[1:]:
            raise ValueError(f"{op}(): pred_masks expected masks of size {gm.shape[1:]} (those of gt_masks), "
                             f"got {pm.shape[1:]}")

        for c in np.union1d(pl, gl).astype(np.int64):
            pk = np.flatnonzero(pl == c)
            gk = np.flatnonzero(gl == c)
            pk = pk[_chainercv_order(ps[pk])]
            dif = gd[gk]
            self.num_gt[c] += int(np.count_nonzero(~dif))
            if pk.size == 0:
                continue
            self._scores[c].append(ps[pk])
            iou = mask_iou(pm[pk], gm[gk]) if gk.size else None
            for t, thresh in enumerate(self.iou_thresholds):
                match = np.zeros(pk.size, np.int8)
                if iou is not None:
                    best = iou.argmax(axis=1)
                    hit = iou[np.arange(pk.size), best] >= thresh
                    taken = np.zeros(gk.size, bool)
                    for j in range(pk.size):
                        if not hit[j]:
                            continue  # FP: no GT of the class overlaps enough
                        k = best[j]
                        if dif[k]:
                            match[j] = -1
                        elif not taken[k]:
                            match[j] = 1
                        # a second detection of a taken GT stays a FP (0)
                        taken[k] = True
                self._match[t][c].append(match)
        return self

    def _labels(self, x, n: int, op: str, name: str) -> np.ndarray:
        a = np.asarray(x)
        if a.size == 0 and n == 0:
            return np.zeros(0, np.int64)
        if a.dtype.kind not in "iu" or a.shape != (n,):
            raise ValueError(f"{op}(): {name} expected an integer array of shape ({n},), got shape {a.shape} "
                             f"dtype {a.dtype}")
        if a.size and (a.min() < 0 or a.max() >= self.num_classes):
            raise ValueError(f"{op}(): {name} expected 0-based class ids in [0, {self.num_classes}), got "
                             f"values in [{a.min()}, {a.max()}]")
        return a.astype(np.int64)

    def merge(self, other: "InstanceAP") -> "InstanceAP":
        """Append ``other``'s images after this one's (in place; for shards of several processes)."""
        if not isinstance(other, InstanceAP):
            raise ValueError(f"InstanceAP.merge(): other expected an InstanceAP, got {type(other).__name__}")
        if other.num_classes != self.num_classes or other.iou_thresholds != self.iou_thresholds:
            raise ValueError(f"InstanceAP.merge(): other expected num_classes {self.num_classes} and "
                             f"iou_thresholds {self.iou_thresholds}, got {other.num_classes} and "
                             f"{other.iou_thresholds}")
        self.num_gt += other.num_gt
        for c in range(self.num_classes):
            self._scores[c] += other._scores[c]
            for t in range(len(self.iou_thresholds)):
                self._match[t][c] += other._match[t][c]
        return self

    def __add__(self, other: "InstanceAP") -> "InstanceAP":
        out = InstanceAP(self.num_classes, self.iou_thresholds)
        return out.merge(self).merge(other)

    def precision_recall(self, cls: int, thresh_index: int = 0):
        """``(precision, recall)`` along the score ranking of class ``cls`` (recall None without GT)."""
        scores = self._scores[cls]
        if scores:
            s = np.concatenate(scores)
            m = np.concatenate(self._match[thresh_index][cls])[_chainercv_order(s)]
        else:
            m = np.zeros(0, np.int8)
        tp = np.cumsum(m == 1)
        fp = np.cumsum(m == 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            prec = tp / (tp + fp)  # NaN while only difficult matches were seen
        rec = tp / self.num_gt[cls] if self.num_gt[cls] > 0 else None
        return prec, rec

    def compute(self) -> Dict:
        """``{'ap': {thresh: float64 (C,)}, 'map': {thresh: float}, 'num_gt': int64 (C,)}``.

        AP is NaN for a class without (non-difficult) GT; ``map`` is the mean over the others.
        """
        ap: Dict[float, np.ndarray] = {}
        mean: Dict[float, float] = {}
        for t, thresh in enumerate(self.iou_thresholds):
            out = np.full(self.num_classes, np.nan)
            for c in range(self.num_classes):
                prec, rec = self.precision_recall(c, t)
                if rec is not None:
                    out[c] = voc_ap(prec, rec)
            ap[thresh] = out
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean[thresh] = float(np.nanmean(out)) if (~np.isnan(out)).any() else float("nan")
        return {"ap": ap, "map": mean, "num_gt": self.num_gt.copy()}
