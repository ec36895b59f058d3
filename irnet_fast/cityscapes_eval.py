"""Cityscapes instance-level evaluation: AP over IoU 0.5:0.95 and AP50 of the 8 instance classes.

:class:`CityscapesInstanceAP` transcribes ``evalInstanceLevelSemanticLabeling.py`` of the official
``cityscapesscripts`` (its matching, its precision-recall curve and its averages), on arrays
instead of files:

- GT instances of a class: every value ``v`` of the ``instanceIds`` map whose label is the class
  (``v // 1000`` for ``v >= 1000``; ``v`` itself for a group). Only instances (``v >= 1000``) of at
  least 100 pixels are matched; groups and smaller ones only excuse predictions (below).
- A prediction matches a GT instance of its class when their IoU is strictly above the threshold
  (0.5, 0.55, ..., 0.95). The first matching prediction of a GT is a TP with its confidence; a
  further one is a FP with the lower of the two confidences (the GT keeps the higher).
- An unmatched prediction is a FP unless the part of it on void pixels (label ids that are
  ignored in evaluation), on groups and on small GT instances is more than the threshold.
- Per class and threshold: precision / recall at each distinct score (GT without a match count
  as FN), AP = the precision summed over the recall steps (the official convolution); AP 0 with
  GT but no prediction, NaN without GT. ``ap`` per class = the mean over the thresholds, ``map``
  = the NaN-mean over classes and thresholds; ``ap50`` / ``map50`` the same at 0.5.

:func:`official_instance_ap` runs the installed package's evaluator itself on the same data (masks
written as PNG files, as it reads them); :func:`has_cityscapesscripts` says whether it is there.
"""
from __future__ import annotations

import os
import tempfile
import types
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from ._checks import check_array
from .data.cityscapes import Label, labels_table
from .data.instances import instance_pixels

__all__ = ["OVERLAPS", "MIN_REGION_SIZE", "CityscapesInstanceAP", "official_instance_ap", "has_cityscapesscripts"]

OVERLAPS = np.arange(0.5, 1.0, 0.05)  # the official thresholds, floats as it computes them
MIN_REGION_SIZE = 100

_INSTALL = "needs cityscapesscripts: install it with `pip install cityscapesscripts` (or `pip install irnet_fast[cityscapes]`)"


def has_cityscapesscripts() -> bool:
    try:
        import cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling  # noqa: F401
    except Exception:
        return False
    return True


def _label_id(value: int) -> int:
    return int(value) if value < 1000 else int(value / 1000)


def _prediction_pixels(pred, num: int, size, op: str):
    """``(P, [flat pixel indices of each prediction])`` of masks ``bool (P, H, W)`` or of
    a label map ``int (H, W)`` (``num`` predictions), checked against the image ``size``."""
    arr = np.asarray(pred)
    if arr.ndim == 2 and arr.dtype.kind in "iu":
        label = check_array(arr, op=op, name="pred_masks", kind="int", dims=("H", "W"))
        if label.shape != tuple(size):
            raise ValueError(f"{op}(): pred_masks expected a label map of size {tuple(size)} (the instance "
                             f"map's), got {label.shape}")
        if label.size and (label.min() < 0 or label.max() > num):
            raise ValueError(f"{op}(): pred_masks expected label values in [0, {num}] ({num} predictions), got "
                             f"[{label.min()}, {label.max()}]")
        return num, instance_pixels(label, num)
    masks = check_array(pred, op=op, name="pred_masks", kind="bool", dims=("P", "H", "W")).astype(bool)
    if masks.shape[0] and masks.shape[1:] != tuple(size):
        raise ValueError(f"{op}(): pred_masks expected masks of size {tuple(size)} (the instance map's), "
                         f"got {masks.shape[1:]}")
    return masks.shape[0], [np.flatnonzero(m) for m in masks]


class CityscapesInstanceAP:
    """Accumulates images (:meth:`update`) and computes the Cityscapes AP (:meth:`compute`)."""

    def __init__(self, table: Optional[Sequence[Label]] = None):
        table = labels_table() if table is None else tuple(table)
        self.labels = [l for l in table if l.hasInstances and not l.ignoreInEval]
        self.class_names = [l.name for l in self.labels]
        self.void_ids = np.array([l.id for l in table if l.ignoreInEval], np.int64)
        self._train_to_id = {l.trainId: l.id for l in table if 0 <= l.trainId < 255}
        self._images: List[Dict[int, Tuple[list, list]]] = []

    def update(self, pred_masks, pred_classes, pred_scores, instance_ids) -> "CityscapesInstanceAP":
        """Add one image: the predictions as masks ``bool (P, H, W)`` or as one label map ``int (H, W)``
        (prediction ``i`` where it is ``i + 1``: ``ins_seg/<id>.npz``'s, no full-size mask each), their
        train ids ``(P,)`` and confidences ``(P,)``; the image's ``instanceIds`` map ``(H, W)`` as stored.
        Predictions of classes without instances are left out (as the official evaluator does)."""
        op = "CityscapesInstanceAP.update"
        ids = check_array(instance_ids, op=op, name="instance_ids", kind="int", dims=("H", "W")).astype(np.int64)
        classes = np.asarray(pred_classes).reshape(-1)
        scores = np.asarray(pred_scores, np.float64).reshape(-1)
        count, pixels = _prediction_pixels(pred_masks, classes.shape[0], ids.shape, op)
        if classes.shape != (count,) or scores.shape != (count,):
            raise ValueError(f"{op}(): pred_classes and pred_scores expected {count} values each, got "
                             f"{classes.shape[0]} and {scores.shape[0]}")
        uniq, inverse = np.unique(ids, return_inverse=True)
        inverse = inverse.reshape(-1)
        counts = np.bincount(inverse, minlength=len(uniq))
        void = np.isin(ids, self.void_ids).reshape(-1)
        per: Dict[int, Tuple[list, list]] = {}
        for lab in self.labels:
            # (instance id, pixel count) in increasing id order, groups included
            gts = [(int(v), int(c), k) for k, (v, c) in enumerate(zip(uniq, counts)) if _label_id(v) == lab.id]
            per[lab.id] = (gts, [])
        for where, cls, conf in zip(pixels, classes, scores):
            label_id = self._train_to_id.get(int(cls))
            if label_id not in per:
                continue
            if not where.size:
                continue
            inter = np.bincount(inverse[where], minlength=len(uniq))
            gts, preds = per[label_id]
            matched = [(g, int(inter[k])) for g, (_, _, k) in enumerate(gts) if inter[k] > 0]
            preds.append((float(conf), int(where.size), int(np.count_nonzero(void[where])), matched))
        self._images.append(per)
        return self

    def _ap(self, label_id: int, overlap: float) -> float:
        y_true, y_score = np.empty(0), np.empty(0)
        hard_fns = 0
        have_gt = have_pred = False
        for per in self._images:
            gts, preds = per[label_id]
            keep = [g for g, (v, c, _) in enumerate(gts) if v >= 1000 and c >= MIN_REGION_SIZE]
            have_gt |= bool(keep)
            have_pred |= bool(preds)
            matched_preds: Dict[int, list] = {g: [] for g in range(len(gts))}
            for p, (_, _, _, matched) in enumerate(preds):
                for g, inter in matched:
                    matched_preds[g].append((p, inter))
            cur_true = np.ones(len(keep))
            cur_score = np.full(len(keep), -np.inf)
            cur_match = np.zeros(len(keep), bool)
            for i, g in enumerate(keep):
                found = False
                for p, inter in matched_preds[g]:
                    conf, area = preds[p][0], preds[p][1]
                    if float(inter) / (gts[g][1] + area - inter) > overlap:
                        if cur_match[i]:  # a second match: the lower confidence becomes a FP
                            high, low = max(cur_score[i], conf), min(cur_score[i], conf)
                            cur_score[i] = high
                            cur_true = np.append(cur_true, 0)
                            cur_score = np.append(cur_score, low)
                            cur_match = np.append(cur_match, True)
                        else:
                            found = True
                            cur_match[i] = True
                            cur_score[i] = conf
                if not found:
                    hard_fns += 1
            cur_true, cur_score = cur_true[cur_match], cur_score[cur_match]
            for conf, area, void_inter, matched in preds:
                if any(float(inter) / (gts[g][1] + area - inter) > overlap for g, inter in matched):
                    continue
                ignored = void_inter
                for g, inter in matched:
                    if gts[g][0] < 1000:
                        ignored += inter
                    if gts[g][1] < MIN_REGION_SIZE:
                        ignored += inter
                if float(ignored) / area <= overlap:
                    cur_true = np.append(cur_true, 0)
                    cur_score = np.append(cur_score, conf)
            y_true = np.append(y_true, cur_true)
            y_score = np.append(y_score, cur_score)
        if not have_gt:
            return float("nan")
        if not have_pred:
            return 0.0
        order = np.argsort(y_score)
        score_sorted, true_sorted = y_score[order], y_true[order]
        cumsum = np.cumsum(true_sorted)
        _, unique_idx = np.unique(score_sorted, return_index=True)
        num = len(unique_idx) + 1
        examples, trues = len(score_sorted), cumsum[-1]
        precision, recall = np.zeros(num), np.zeros(num)
        cumsum = np.append(cumsum, 0)  # index -1 below reads this 0
        for r, idx in enumerate(unique_idx):
            below = cumsum[idx - 1]
            tp = trues - below
            fp = examples - idx - tp
            fn = below + hard_fns
            precision[r] = float(tp) / (tp + fp)
            recall[r] = float(tp) / (tp + fn)
        precision[-1], recall[-1] = 1.0, 0.0
        conv = np.append(np.append(recall[0], recall), 0.0)
        steps = np.convolve(conv, [-0.5, 0, 0.5], "valid")
        return float(np.dot(precision, steps))

    def ap_matrix(self) -> np.ndarray:
        """``float64 (8, 10)``: AP of each instance class at each threshold of :data:`OVERLAPS`."""
        return np.array([[self._ap(l.id, o) for o in OVERLAPS] for l in self.labels]).reshape(len(self.labels),
                                                                                              len(OVERLAPS))

    def compute(self) -> Dict:
        """``{'map', 'map50', 'ap': {class: AP}, 'ap50': {class: AP50}, 'matrix'}`` (fractions; NaN
        where a class has no GT)."""
        return averages(self.ap_matrix(), self.class_names)


def averages(matrix: np.ndarray, class_names: Sequence[str]) -> Dict:
    """The official averages of an AP matrix ``(classes, thresholds)``."""
    import warnings
    o50 = np.where(np.isclose(OVERLAPS, 0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN means stay NaN
        return {"map": float(np.nanmean(matrix)), "map50": float(np.nanmean(matrix[:, o50])),
                "ap": {n: float(np.average(matrix[i])) for i, n in enumerate(class_names)},
                "ap50": {n: float(np.average(matrix[i, o50])) for i, n in enumerate(class_names)},
                "matrix": matrix}


class _NumpyCompat(types.ModuleType):
    """numpy as the official evaluator expects it (it calls ``np.in1d``, gone in numpy 2.4)."""

    def __init__(self):
        super().__init__("numpy")

    def __getattr__(self, name):
        if name == "in1d":
            return lambda a, b: np.isin(np.ravel(a), b)
        return getattr(np, name)


def official_instance_ap(records: Iterable[Tuple[os.PathLike, np.ndarray, np.ndarray, np.ndarray]],
                         workdir: Optional[os.PathLike] = None) -> Dict:
    """The installed ``cityscapesscripts`` evaluator on ``records``: per image ``(path of its
    gtFine instanceIds PNG, masks bool (P, H, W) or a label map int (H, W) (prediction i where it is
    i + 1), train ids (P,), confidences (P,))``.

    Predictions are written in the official result format (one PNG per mask and a text file per
    image) under ``workdir`` (a temporary folder by default); nothing is written elsewhere (the
    evaluator's ground-truth cache and JSON export are not used). Returns :func:`averages`.
    """
    try:
        from cityscapesscripts.evaluation import evalInstanceLevelSemanticLabeling as ev
        from cityscapesscripts.evaluation.instances2dict import instances2dict
    except Exception as exc:
        raise ImportError(f"official_instance_ap() {_INSTALL}") from exc
    table = labels_table()
    train_to_id = {l.trainId: l.id for l in table if 0 <= l.trainId < 255}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = os.path.realpath(tmp)
        gt_files, pred_files = [], []
        for i, (gt_path, masks, classes, scores) in enumerate(records):
            lines = []
            masks = np.asarray(masks)
            for k, (cls, conf) in enumerate(zip(classes, scores)):
                mask = masks == k + 1 if masks.ndim == 2 else masks[k].astype(bool)
                png = f"img{i}_inst{k}.png"
                Image.fromarray(mask.astype(np.uint8) * 255).save(os.path.join(tmp, png))
                lines.append(f"{png} {train_to_id[int(cls)]} {float(conf)!r}\n")
            txt = os.path.join(tmp, f"img{i}.txt")
            Path(txt).write_text("".join(lines))
            gt_files.append(os.path.abspath(os.fspath(gt_path)))
            pred_files.append(txt)
        args = ev.CArgs()
        args.__dict__.update(vars(ev.args))
        args.predictionPath, args.predictionWalk = tmp, None
        args.quiet, args.JSONOutput, args.distanceAvailable = True, False, False
        args.gtInstancesFile = os.path.join(tmp, "gtInstances.json")
        saved = ev.np
        ev.np = _NumpyCompat()
        try:
            ev.setInstanceLabels(args)
            gt = instances2dict(gt_files)
            matches = ev.matchGtWithPreds(pred_files, gt_files, gt, args)
            matrix = ev.evaluateMatches(matches, args)[0]
        finally:
            ev.np = saved
        return averages(np.asarray(matrix, np.float64), list(args.instLabels))
