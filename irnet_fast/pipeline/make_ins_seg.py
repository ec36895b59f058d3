"""``make_ins_seg``: instance pseudo labels (docs/algorithm.md, "Instances").

Per image (the CAMs of the classes with instances only, where the dataset says which: Cityscapes):
IRNet inference (boundary and displacement at stride 4); centroids by
``find_centroids_with_refinement`` (``centroid_iterations``); clusters by ``cluster_centroids``
(``centroid_thres``); the CAMs split per cluster ``(K, U, h, w)`` and propagated by the random
walk; upsampled, divided by the global max, a background channel of ``ins_seg_bg_thres``, argmax;
each of the ``K * U`` channels becomes a mask of its class, split into 4-connected segments by
``detect_instance`` (segments under ``min_instance_fraction`` of the image score 0).

Writes ``<out_dir>/ins_seg/<id>.npz`` (compressed; read by :func:`~irnet_fast.data.instances.load_instances`):
``score`` float32 (P,), ``class`` int64 (P,) (0-based class ids) and ``label`` int32 (H, W), instance
``i`` where ``label == i + 1``. The segments are disjoint, so one plane holds what the reference
stores as P full-size masks (hundreds of planes on a fragmented full-resolution image). An image
without instances gets P = 0.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch

from .._io import save_npz
from ..data.instances import INSTANCE_KEYS, is_instance_file
from ..ops import cluster_centroids, detect_instance, find_centroids_with_refinement, separate_score_by_mask
from .config import Config
from .distributed import init_distributed
from .make_cam import load_cam_file
from .inference import channel_chunks, irn_and_cam, load_edge_displacement, upsample_scores, upsampled, walk
from .common import LogContext, StepSummary, infer_source, run_images

__all__ = ["make_ins_seg", "INSTANCE_KEYS", "instances_from_walk", "instance_cams"]


def instances_from_walk(rw: torch.Tensor, keys: np.ndarray, num_clusters: int, size, cfg: Config) -> Dict[str, np.ndarray]:
    """Instances of one image from its walked per-cluster scores ``rw (K * U, h, w)``:
    ``{'score', 'label', 'class'}`` as ``ins_seg/<id>.npz`` holds them.

    The argmax over the background and the ``K * U`` upsampled channels runs a chunk of channels at
    a time (:func:`channel_chunks`), so a full-resolution image holds a few planes, not all of them;
    the result is that of the whole stack (ties go to the lower channel, the background first)."""
    height, width = size
    chunks = channel_chunks(rw.shape[0], (height, width))
    if len(chunks) == 1:  # every VOC image: upsampled once
        stack = upsample_scores(rw, (height, width))

        def scores_of(chunk: slice) -> torch.Tensor:
            return stack
    else:  # a full-resolution image: each chunk upsampled again in each of the three passes
        peak = max((float(upsampled(rw[c], (height, width)).max()) for c in chunks), default=0.0)

        def scores_of(chunk: slice) -> torch.Tensor:  # upsample_scores' values, over the image's max
            up = upsampled(rw[chunk], (height, width))
            return up / peak if peak > 0 else up

    best = torch.full((height, width), float(cfg.ins_seg_bg_thres), dtype=torch.float32, device=rw.device)
    shape = torch.zeros((height, width), dtype=torch.long, device=rw.device)
    for chunk in chunks:
        value, index = scores_of(chunk).max(dim=0)
        better = value > best
        best = torch.where(better, value, best)
        shape = torch.where(better, index + (chunk.start + 1), shape)
    class_id = np.repeat(np.asarray(keys, np.int64), num_clusters)
    fragment = height * width * cfg.min_instance_fraction
    label = np.zeros((height, width), np.int32)
    scores, classes, total = [np.zeros(0, np.float32)], [np.zeros(0, np.int64)], 0
    for chunk in chunks:
        up = scores_of(chunk)
        channels = torch.arange(chunk.start + 1, chunk.stop + 1, device=shape.device).view(-1, 1, 1)
        found = detect_instance(up.cpu().numpy(), (shape[None] == channels).cpu().numpy(), class_id[chunk],
                                max_fragment_size=fragment, label_map=True)
        inside = found["label"] > 0
        label[inside] = found["label"][inside] + total
        total += len(found["score"])
        scores.append(found["score"])
        classes.append(found["class"])
    return {"score": np.concatenate(scores), "label": label, "class": np.concatenate(classes)}


def instance_cams(cams: Dict[str, np.ndarray], classes) -> Dict[str, np.ndarray]:
    """The CAM file's arrays restricted to the classes that have instances (all when ``classes`` is
    None: VOC, COCO; Cityscapes' 8 of its 19 classes: road or sky make no instances)."""
    if classes is None:
        return cams
    keep = np.isin(cams["keys"], np.asarray(classes, np.int64))
    return {k: (v[keep] if k in ("keys", "cam", "high_res") else v) for k, v in cams.items()}


def make_ins_seg(cfg: Config, *, weights=None, progress: bool = True, limit: Optional[int] = None) -> StepSummary:
    """Writes ``<out_dir>/ins_seg/<id>.npz`` for ``infer_split`` from the CAM files and IRNet."""
    info = init_distributed(cfg.device)
    out = Path(cfg.out_dir)
    cam_dir, ins_dir = out / "cam", out / "ins_seg"
    with LogContext(out / "make_ins_seg.log", info, progress):
        source = infer_source(cfg)
        model = load_edge_displacement(cfg, weights, info.device)
        classes = getattr(source, "instance_classes", None)

        def load(name: str):
            return source.load_image(name), instance_cams(load_cam_file(cam_dir / f"{name}.npz"), classes)

        def process(items) -> None:
            edges, scores, clusters = [], [], []
            for _, (image, cams) in items:
                edge, disp, cam = irn_and_cam(model, image, cams, info.device)
                centroids = find_centroids_with_refinement(disp, cfg.centroid_iterations, backend=cfg.backend)
                masks = cluster_centroids(centroids, disp, cfg.centroid_thres)
                split = separate_score_by_mask(cam, masks)  # (K, U, h, w)
                edges.append(edge)
                scores.append(split.reshape(-1, *split.shape[2:]))
                clusters.append(masks.shape[0])
            for (name, (image, cams)), rw, num in zip(items, walk(cfg, scores, edges), clusters):
                found = instances_from_walk(rw, cams["keys"], num, image.shape[:2], cfg)
                save_npz(ins_dir / f"{name}.npz", {k: found[k] for k in INSTANCE_KEYS}, compress=True)

        return run_images("make_ins_seg", source.ids, ins_dir, info,
                          is_done=lambda n: is_instance_file(ins_dir / f"{n}.npz"), load=load,
                          process=process, progress=progress, num_workers=cfg.num_workers,
                          chunk=cfg.walk_batch, limit=limit)
