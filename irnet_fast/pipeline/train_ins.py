"""The final instance model: Mask R-CNN trained on the instance pseudo labels, and its evaluation.

``train_ins(cfg)`` trains torchvision's Mask R-CNN (:func:`~irnet_fast.models.build_maskrcnn`,
``maskrcnn_*`` keys of :class:`~.config.Config`) on the masks of ``<out_dir>/ins_seg/<id>.npz``
for the images of ``infer_split`` (the labels as ``make_ins_seg`` wrote them: no polygons, boxes
from the masks, fragments and tiny masks left out, :class:`~irnet_fast.data.instances.InstanceDataset`)
and writes ``<out_dir>/maskrcnn.pth``; also ``train_ins.log``, ``maskrcnn_checkpoint.pt`` (every
epoch; ``resume`` continues from it) and ``maskrcnn_history.json``. One process or torchrun (DDP):
the loop is :func:`.training.fit`. The RPN and RoI samplers draw from each process's own random
stream, so N processes train as one process would with other samples, not bit for bit the same.

``eval_ins(cfg)`` runs it on the ground truth of a held-out split (``heldout_split``,
never one that shares images with ``infer_split``) and writes ``<out_dir>/eval_ins.json``: the
paper's VOC mask AP at IoU 0.5 and 0.7 (``map50``, ``map70``, percent; the evaluation of
``eval_ins_seg``), per class, and COCO's mask AP (``coco``: ``AP``, ``AP50``, ``AP75``, ...) by
pycocotools' ``COCOeval`` when pycocotools is installed.
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
from torch import nn

from ..coco_export import coco_dataset, ground_truth_records, source_category_ids, source_image_id
from ..data.coco import has_pycocotools
from ..data.instances import InstanceDataset, collate_detection
from ..errors import InputValueError
from ..metrics import InstanceAP
from ..models import PretrainedWeightsWarning, build_maskrcnn, calibrate_backbone
from .checkpoint import read_state_dict
from .common import LogContext, Progress, check_held_out, held_out_source, infer_source
from .config import Config
from .distributed import DistInfo, cleanup_distributed, init_distributed
from .evaluate import _inputs, _main_only
from .train_irn import load_cam_backbone
from .training import fit, save_weights

__all__ = ["train_ins", "eval_ins", "build_model", "load_maskrcnn", "predict_instances", "eval_source"]

logger = logging.getLogger("irnet_fast.pipeline")

COCO_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _backbone_weights(cfg: Config) -> Optional[str]:
    if cfg.maskrcnn_backbone_weights is not None:
        return cfg.maskrcnn_backbone_weights
    return cfg.backbone_weights if cfg.maskrcnn_backbone == cfg.backbone else None


def build_model(cfg: Config, num_classes: int, *, weights: bool = True) -> nn.Module:
    """The Mask R-CNN of ``cfg`` (``weights=False``: without loading the ImageNet backbone, for a
    network whose trained weights are loaded next)."""
    return build_maskrcnn(
        num_classes, cfg.maskrcnn_backbone, _backbone_weights(cfg) if weights else None,
        trainable_layers=cfg.maskrcnn_trainable_layers, fpn_channels=cfg.maskrcnn_fpn_channels,
        box_head_size=cfg.maskrcnn_box_head_size, mask_head_layers=cfg.maskrcnn_mask_head_layers,
        min_size=cfg.maskrcnn_min_size, max_size=cfg.maskrcnn_max_size,
        box_batch_size_per_image=cfg.maskrcnn_box_batch_size)


def eval_source(cfg: Config):
    """The held-out images ``eval_ins`` evaluates on (:func:`~irnet_fast.pipeline.common.held_out_source`)."""
    return held_out_source(cfg, cfg.heldout_split, "eval_ins")


def train_ins(cfg: Config, *, resume: bool = False, progress: bool = True, stop_after: Optional[int] = None) -> Path:
    """Trains Mask R-CNN on the instance pseudo labels; returns ``<out_dir>/maskrcnn.pth``.

    Args:
        cfg: the configuration (``maskrcnn_*`` keys, data, runtime).
        resume: continue from ``<out_dir>/maskrcnn_checkpoint.pt`` when it exists.
        progress: a progress line and the log on stderr (main process only).
        stop_after: train at most this many epochs in this call (then return the checkpoint path).
    """
    check_held_out(cfg, cfg.heldout_split, "train_ins")
    info = init_distributed(cfg.device)
    out_dir = Path(cfg.out_dir)
    log = LogContext(out_dir / "train_ins.log", info, progress)
    try:
        torch.manual_seed(cfg.seed)
        source = infer_source(cfg)
        names, _, excluded = _inputs(cfg, out_dir / "ins_seg", source.ids, ".npz", "train_ins", "make_ins_seg")
        dataset = InstanceDataset(source, out_dir / "ins_seg", names, hflip=cfg.maskrcnn_hflip,
                                  min_score=cfg.maskrcnn_min_score, min_pixels=cfg.maskrcnn_min_instance_pixels,
                                  seed=cfg.seed)
        model = build_model(cfg, source.num_classes)
        if cfg.maskrcnn_init_from_cam:
            load_cam_backbone(model.backbone.body, out_dir / "cam.pth", "maskrcnn_init_from_cam")
        elif _backbone_weights(cfg) is None and cfg.bn_calibration_batches > 0:
            _calibrate(model, dataset, cfg, info)
        logger.info("maskrcnn: %s FPN, %d training images (%d left out upstream), %d instances per image on average",
                    cfg.maskrcnn_backbone, len(dataset), len(excluded), _mean_instances(dataset))
        params = [p for p in model.parameters() if p.requires_grad]

        def step(net: nn.Module, batch) -> Dict[str, torch.Tensor]:
            images, targets = batch
            images = [im.to(info.device, non_blocking=True) for im in images]
            targets = [{k: v.to(info.device, non_blocking=True) for k, v in t.items() if k != "name"} for t in targets]
            losses = net(images, targets)
            return {"total": sum(losses.values()), **{k.replace("loss_", ""): v for k, v in losses.items()}}

        model, finished = fit(name="maskrcnn", cfg=cfg, info=info, model=model,
                              groups=[(params, cfg.maskrcnn_learning_rate)], weight_decay=cfg.maskrcnn_weight_decay,
                              dataset=dataset, global_batch=cfg.maskrcnn_batch_size,
                              num_epochs=cfg.maskrcnn_num_epochs, step_fn=step, resume=resume, progress=progress,
                              stop_after=stop_after, collate_fn=collate_detection,
                              warmup_steps=cfg.maskrcnn_warmup_iters, warmup_factor=cfg.maskrcnn_warmup_factor)
        if not finished:
            return out_dir / "maskrcnn_checkpoint.pt"
        return save_weights(model, out_dir / "maskrcnn.pth", info)
    finally:
        log.close()
        cleanup_distributed(info)


def _mean_instances(dataset: InstanceDataset) -> float:
    counts = [len(dataset.instances(n)[1]) for n in dataset.ids[:64]]
    return float(np.mean(counts)) if counts else 0.0


def _calibrate(model: nn.Module, dataset: InstanceDataset, cfg: Config, info: DistInfo) -> None:
    """BatchNorm statistics of the randomly initialised backbone from the first training batches
    (the same on every process)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.maskrcnn_batch_size, shuffle=False,
                                         num_workers=cfg.num_workers, collate_fn=collate_detection)
    model.to(info.device)
    batches = ([im.to(info.device) for im in images] for _, (images, _) in zip(range(cfg.bn_calibration_batches), loader))
    used = calibrate_backbone(model, batches)
    logger.info("maskrcnn: BatchNorm statistics of the randomly initialised backbone measured on %d batches", used)


def load_maskrcnn(cfg: Config, num_classes: int, weights=None, device="cpu") -> nn.Module:
    """The trained Mask R-CNN (``weights``, default ``<out_dir>/maskrcnn.pth``) in eval mode."""
    path = Path(weights) if weights else Path(cfg.out_dir) / "maskrcnn.pth"
    state = read_state_dict(path, "Mask R-CNN")
    with warnings.catch_warnings():  # the trained weights replace the random initialisation
        warnings.simplefilter("ignore", PretrainedWeightsWarning)
        model = build_model(cfg, num_classes, weights=False)
    expected = model.state_dict()
    unknown, missing = sorted(set(state) - set(expected)), sorted(set(expected) - set(state))
    shapes = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if unknown or missing or shapes:
        raise InputValueError(f"Mask R-CNN weights {path} do not fit the network of this config (maskrcnn_backbone, "
                              f"head sizes, number of classes): unknown keys {unknown[:4]}, missing keys {missing[:4]}, "
                              f"other shapes {shapes[:4]}")
    model.load_state_dict(state)
    return model.to(device).eval()


@torch.no_grad()
def predict_instances(model: nn.Module, image: np.ndarray, device="cpu", mask_threshold: float = 0.5) -> Dict:
    """Instances of one RGB ``uint8 (H, W, 3)`` image: ``{'score' float32 (P,), 'mask' bool (P, H, W),
    'class' int64 (P,) 0-based}`` (the format of ``ins_seg/<id>.npz``), by score, highest first."""
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).to(device).float().div_(255.0)
    out = model([x])[0]
    return {"score": out["scores"].float().cpu().numpy(), "mask": (out["masks"][:, 0] > mask_threshold).cpu().numpy(),
            "class": (out["labels"] - 1).cpu().numpy().astype(np.int64)}


def _coco_ground_truth(cfg: Config, source, names: List[str]):
    from pycocotools.coco import COCO
    with contextlib.redirect_stdout(io.StringIO()):
        if cfg.dataset == "coco":
            return COCO(str(cfg.heldout_coco_ann_file))
        gt = COCO()
        gt.dataset = coco_dataset(ground_truth_records(source, names), source.class_names,
                                  category_ids=source_category_ids(source))
        gt.createIndex()
    return gt


def _coco_eval(gt, annotations: List[Dict], image_ids: List[int]) -> Dict[str, Optional[float]]:
    from pycocotools.cocoeval import COCOeval
    if not annotations:  # loadRes refuses an empty list: no detection finds nothing
        return {k: 0.0 for k in COCO_STATS}
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(annotations), "segm")
        ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {k: (None if v < 0 else 100 * float(v)) for k, v in zip(COCO_STATS, ev.stats)}


def eval_ins(cfg: Config, weights=None, progress: bool = False) -> Dict:
    """Mask R-CNN's VOC mask AP (percent) at IoU 0.5 and 0.7 on the held-out split, per class and
    mean, and COCO's mask AP when pycocotools is installed (``<out_dir>/eval_ins.json``)."""
    def run():
        source = eval_source(cfg)
        device = init_distributed(cfg.device).device
        model = load_maskrcnn(cfg, source.num_classes, weights, device)
        use_coco = has_pycocotools()
        cat_ids = source_category_ids(source)
        ap = InstanceAP(source.num_classes, (0.5, 0.7))
        annotations: List[Dict] = []
        bar = Progress(progress, "eval_ins", len(source.ids))
        for i, name in enumerate(source.ids):
            image = source.load_image(name)
            pred = predict_instances(model, image, device)
            gt_masks, gt_labels = source.instance_label(name)
            ap.update(pred["mask"], pred["class"], pred["score"], gt_masks, gt_labels)
            if use_coco:
                rec = {"file_name": name, "image_id": source_image_id(source, name), "masks": pred["mask"],
                       "labels": pred["class"], "scores": pred["score"], "height": image.shape[0],
                       "width": image.shape[1]}
                annotations += coco_dataset([rec], source.class_names, category_ids=cat_ids)["annotations"]
            bar.update(i + 1)
        bar.close()
        res = ap.compute()

        def per_class(values):
            return {n: (None if np.isnan(v) else 100 * float(v)) for n, v in zip(source.class_names, values)}
        split = cfg.heldout_coco_ann_file if cfg.dataset == "coco" else cfg.heldout_split
        result = {"map50": 100 * res["map"][0.5], "map70": 100 * res["map"][0.7], "split": split,
                  "images": len(source.ids), "ap50": per_class(res["ap"][0.5]), "ap70": per_class(res["ap"][0.7])}
        if use_coco:
            gt = _coco_ground_truth(cfg, source, source.ids)
            result["coco"] = _coco_eval(gt, annotations, [source_image_id(source, n) for n in source.ids])
        return result
    return _main_only(cfg, "eval_ins", run)
