"""Mask R-CNN (torchvision's, ResNet-FPN) for training on the instance pseudo labels.

:func:`build_maskrcnn` is torchvision's ``maskrcnn_resnet50_fpn`` (the He et al. model the paper
trains on its labels) with the backbone from a local ImageNet checkpoint and nothing downloaded;
``resnet18`` / ``resnet34`` / ``resnet101`` FPN backbones are the same construction. BatchNorm
never updates its statistics (torchvision's ``FrozenBatchNorm2d`` with ImageNet weights, and so
here: the modules stay in eval mode); with ImageNet weights its scale and shift are frozen too
and only the last ``trainable_layers`` stages train (torchvision's default 3). Without weights
every stage and the BatchNorm scale and shift train, after the statistics are measured on the
first training batches (:func:`calibrate_backbone`), as the CAM network does from scratch.
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence

import torch
from torch import nn

from .backbone import PathLike, calibrate_batchnorm, pretrained_or_warn

__all__ = ["MASKRCNN_BACKBONES", "MaskRCNNNet", "build_maskrcnn", "calibrate_backbone"]

MASKRCNN_BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")


def _detection():
    try:
        from torchvision.models import resnet
        from torchvision.models.detection import backbone_utils, faster_rcnn, mask_rcnn
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("Mask R-CNN needs torchvision: pip install torchvision") from exc
    return resnet, backbone_utils, faster_rcnn, mask_rcnn


def _batchnorms(module: nn.Module):
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


class MaskRCNNNet(_detection()[3].MaskRCNN):
    """torchvision's ``MaskRCNN`` whose backbone BatchNorm stays in eval mode (frozen statistics)."""

    def train(self, mode: bool = True) -> "MaskRCNNNet":
        super().train(mode)
        for m in _batchnorms(self.backbone):
            m.eval()
        return self


def build_maskrcnn(num_classes: int, backbone: str = "resnet50", weights: Optional[PathLike] = None, *,
                   trainable_layers: Optional[int] = None, fpn_channels: int = 256, box_head_size: int = 1024,
                   mask_head_layers: Sequence[int] = (256, 256, 256, 256), **kwargs) -> MaskRCNNNet:
    """Mask R-CNN with a ResNet-FPN backbone for ``num_classes`` foreground classes (+ background).

    With the defaults and ``resnet50`` this is torchvision's ``maskrcnn_resnet50_fpn``, layer for
    layer (FPN of 256 channels, a box head of two 1024-wide layers, a mask head of four 256-channel
    convolutions and a 256-channel deconvolution); smaller heads are for CPU runs.

    Args:
        num_classes: foreground classes; the network predicts ``num_classes + 1`` (0 = background).
        backbone: one of :data:`MASKRCNN_BACKBONES`.
        weights: a local torchvision ImageNet checkpoint of that ResNet (``resnet50-0676ba61.pth``);
            ``None`` starts from random initialisation with a :class:`PretrainedWeightsWarning`.
        trainable_layers: ResNet stages that train, counted from layer4 (0..5); default 3 with
            weights (torchvision's), 5 without.
        fpn_channels, box_head_size, mask_head_layers: widths of the FPN, the box head's two fully
            connected layers, and the mask head's convolutions (its deconvolution has the last one).
        kwargs: passed to torchvision's ``MaskRCNN`` (``min_size``, ``max_size``,
            ``box_batch_size_per_image``, ...).
    """
    op = "build_maskrcnn"
    if backbone not in MASKRCNN_BACKBONES:
        raise ValueError(f"{op}(): backbone expected one of {list(MASKRCNN_BACKBONES)}, got {backbone!r}")
    for name, value in (("num_classes", num_classes), ("fpn_channels", fpn_channels), ("box_head_size", box_head_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{op}(): {name} expected an integer >= 1, got {value!r}")
    layers = tuple(mask_head_layers)
    if not layers or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in layers):
        raise ValueError(f"{op}(): mask_head_layers expected a non-empty sequence of integers >= 1, got {layers!r}")
    if trainable_layers is None:
        trainable_layers = 3 if weights is not None else 5
    if isinstance(trainable_layers, bool) or not isinstance(trainable_layers, int) or not 0 <= trainable_layers <= 5:
        raise ValueError(f"{op}(): trainable_layers expected an integer in [0, 5], got {trainable_layers!r}")
    resnet, backbone_utils, faster_rcnn, mask_rcnn = _detection()
    net = getattr(resnet, backbone)(weights=None)
    net.fc = None  # the classifier: not part of the detector, not in its state dict
    net.name = backbone
    pretrained_or_warn(net, weights, f"Mask R-CNN {backbone}", "maskrcnn_backbone_weights or --backbone-weights")
    # torchvision's rule (backbone_utils._resnet_fpn_extractor): the last stages train, bn1 with conv1
    train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers] + (["bn1"] if trainable_layers == 5 else [])
    for name, param in net.named_parameters():
        if not any(name.startswith(t) for t in train):
            param.requires_grad_(False)
    for m in _batchnorms(net):
        m.eval()
        if weights is not None:  # torchvision's FrozenBatchNorm2d: no trainable scale / shift
            for param in m.parameters():
                param.requires_grad_(False)
    stage2 = net.inplanes // 8  # layer1's output channels
    body = backbone_utils.BackboneWithFPN(net, {f"layer{k}": str(k - 1) for k in (1, 2, 3, 4)},
                                          [stage2 * 2 ** (k - 1) for k in (1, 2, 3, 4)], fpn_channels)
    classes = num_classes + 1
    box_head = faster_rcnn.TwoMLPHead(fpn_channels * 7 * 7, box_head_size)
    return MaskRCNNNet(body, num_classes=None, box_head=box_head,
                       box_predictor=faster_rcnn.FastRCNNPredictor(box_head_size, classes),
                       mask_head=mask_rcnn.MaskRCNNHeads(fpn_channels, layers, 1),
                       mask_predictor=mask_rcnn.MaskRCNNPredictor(layers[-1], layers[-1], classes), **kwargs)


@torch.no_grad()
def calibrate_backbone(model: MaskRCNNNet, batches: Iterable) -> int:
    """Measures the backbone's BatchNorm statistics on ``batches`` (lists of ``(3, H, W)`` images in
    [0, 1], transformed as the detector transforms them) and freezes them; returns the count."""
    def inputs():
        for images in batches:
            yield model.transform(list(images))[0].tensors
    return calibrate_batchnorm(model.backbone.body, inputs())
