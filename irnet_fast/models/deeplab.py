"""The final semantic segmentation network: torchvision's DeepLabV3 on a ResNet.

IRNet's semantic results are those of a fully supervised DeepLab trained on its pseudo labels.
:func:`build_deeplab` assembles torchvision's own pieces (``DeepLabV3``, ``DeepLabHead`` with its
ASPP, ``IntermediateLayerGetter`` over a torchvision ResNet), so an ImageNet checkpoint saved from
torchvision loads from a local file (nothing is downloaded) and the trained weights load into
``torchvision.models.segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None,
aux_loss=False, num_classes=...)`` for output stride 8 with a ResNet-50.

Output stride 8 (torchvision's choice, atrous rates 12, 24, 36) or 16 (the DeepLabV3 paper's
training setting, rates 6, 12, 18): the strides of layer3 / layer4 become dilations. torchvision
dilates Bottleneck networks itself; its BasicBlock (ResNet-18/34) refuses dilation, so those are
dilated here the same way (the first block's strided convolution and shortcut get stride 1, the
3x3 convolutions of the stage dilation d, with the first one keeping the previous stage's, as
torchvision's ``_make_layer`` does). Weight shapes do not depend on the dilation, so the weights
of IRNet's backbone (:class:`~.backbone.ResNetBackbone`, same names) load too
(``deeplab_init_from_cam``).
"""
from __future__ import annotations

import os
from typing import Optional, Tuple, Union

from torch import nn

from .backbone import _torchvision_resnet, pretrained_or_warn

__all__ = ["build_deeplab", "DEEPLAB_BACKBONES", "atrous_rates"]

# name -> (block, blocks per stage, channels of layer4)
DEEPLAB_BACKBONES = {
    "resnet18": ("BasicBlock", (2, 2, 2, 2), 512),
    "resnet34": ("BasicBlock", (3, 4, 6, 3), 512),
    "resnet50": ("Bottleneck", (3, 4, 6, 3), 2048),
    "resnet101": ("Bottleneck", (3, 4, 23, 3), 2048),
}

PathLike = Union[str, "os.PathLike[str]"]


def atrous_rates(output_stride: int) -> Tuple[int, int, int]:
    """ASPP rates of the DeepLabV3 paper: (6, 12, 18) at output stride 16, doubled at 8."""
    if output_stride not in (8, 16):
        raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
    return (6, 12, 18) if output_stride == 16 else (12, 24, 36)


def _dilate_basic_stage(stage: nn.Sequential, previous: int, dilation: int) -> None:
    for i, block in enumerate(stage):
        if i == 0:
            block.conv1.stride = (1, 1)
            if block.downsample is not None:
                block.downsample[0].stride = (1, 1)
        for conv, d in ((block.conv1, previous if i == 0 else dilation), (block.conv2, dilation)):
            conv.dilation, conv.padding = (d, d), (d, d)


def build_deeplab(num_classes: int, backbone: str = "resnet50", weights: Optional[PathLike] = None, *,
                  output_stride: int = 8) -> nn.Module:
    """torchvision ``DeepLabV3`` (no auxiliary head) with ``num_classes`` outputs (background
    included) on ``backbone``, its backbone from the local ImageNet checkpoint ``weights``.

    Without ``weights`` the network keeps its random initialisation and a
    :class:`~.backbone.PretrainedWeightsWarning` says so. ``forward(x)`` returns
    ``{"out": logits (B, num_classes, H, W)}`` at the input's size.
    """
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3

    if backbone not in DEEPLAB_BACKBONES:
        raise ValueError(f"unknown DeepLab backbone {backbone!r}; expected one of {sorted(DEEPLAB_BACKBONES)}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 (background and a class), got {num_classes}")
    rates = atrous_rates(output_stride)
    dilate = [False, output_stride == 8, True]
    resnet = _torchvision_resnet()
    block_name, layers, channels = DEEPLAB_BACKBONES[backbone]
    block = getattr(resnet, block_name)
    if block_name == "Bottleneck":
        net = resnet.ResNet(block, list(layers), replace_stride_with_dilation=dilate)
    else:
        net = resnet.ResNet(block, list(layers))
        d = 1
        for stage, on in zip((net.layer2, net.layer3, net.layer4), dilate):
            if on:
                _dilate_basic_stage(stage, d, d * 2)
                d *= 2
    body = IntermediateLayerGetter(net, return_layers={"layer4": "out"})  # torchvision's names, no fc
    body.name = backbone
    pretrained_or_warn(body, weights, f"DeepLab {backbone}", "a local torchvision checkpoint: deeplab_backbone_weights")
    return DeepLabV3(body, DeepLabHead(channels, num_classes, rates), None)
