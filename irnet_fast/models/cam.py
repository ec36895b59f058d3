"""The CAM classifier of IRNet (the reference's ``resnet50_cam`` network, docs/algorithm.md, "Training")
and its inference form."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbone import PathLike, build_backbone

__all__ = ["CAMNet", "classification_loss"]


def classification_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """The CAM training loss: ``multilabel_soft_margin_loss(logits, labels)``.

    Args:
        logits (Tensor[B, C]); labels (Tensor[B, C]): multi-hot image-level labels.
    """
    return F.multilabel_soft_margin_loss(logits, labels.to(logits.dtype))


class CAMNet(nn.Module):
    """Image classifier whose 1x1 classifier weights give the class activation maps.

    Stages as the reference: stage1 = conv1 .. layer1, stage2 = layer2, stage3 = layer3,
    stage4 = layer4 (output stride 16). The output of stage2 is detached, so stages 1-2 never
    train; conv1 and bn1 have ``requires_grad=False``; every BatchNorm uses its running statistics
    (never updated). Head: global average pooling, then a 1x1 convolution ``C -> num_classes``
    without bias.

    What trains, by default exactly the reference's set: every parameter of layer3 and layer4
    (convolutions and BatchNorm scale/shift) and the classifier.

    Args:
        backbone_name (str): "resnet50" (the paper), "resnet34" or "resnet18".
        num_classes (int): 20 for VOC (background excluded), 80 for COCO.
        weights (path, optional): local torchvision ImageNet checkpoint of the backbone.
        train_bn_affine (bool): True (default, the reference) lets the BatchNorm scale/shift of
            layer3-4 train with the convolutions (their statistics stay fixed); False freezes every
            BatchNorm scale/shift too.

    Parameter names: ``backbone.*`` (torchvision names) and ``classifier.weight``: one to one with
    a reference ``res50_cam.pth`` (``resnet50.*`` there), see :mod:`irnet_fast.models.reference_format`.
    """

    def __init__(self, backbone_name: str = "resnet50", num_classes: int = 20,
                 weights: Optional[PathLike] = None, *, train_bn_affine: bool = True):
        super().__init__()
        self.backbone = build_backbone(backbone_name, weights, freeze_bn_affine=not train_bn_affine)
        self.num_classes = int(num_classes)
        self.classifier = nn.Conv2d(self.backbone.out_channels[-1], self.num_classes, 1, bias=False)
        for module in (self.backbone.conv1, self.backbone.bn1):
            for param in module.parameters():
                param.requires_grad_(False)

    # --- stages -----------------------------------------------------------------------------
    def stage1(self, x: Tensor) -> Tensor:
        return self.backbone.layer1(self.backbone.stem(x))

    def stage2(self, x: Tensor) -> Tensor:
        return self.backbone.layer2(x)

    def stage3(self, x: Tensor) -> Tensor:
        return self.backbone.layer3(x)

    def stage4(self, x: Tensor) -> Tensor:
        return self.backbone.layer4(x)

    def features(self, x: Tensor) -> Tensor:
        """Stage-4 features ``(B, C, ceil(H/16), ceil(W/16))``; stages 1-2 detached."""
        x = self.stage2(self.stage1(x)).detach()
        return self.stage4(self.stage3(x))

    # --- training ---------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(B, num_classes)`` of normalised images ``(B, 3, H, W)``."""
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, 1)
        return self.classifier(x).flatten(1)

    @staticmethod
    def loss(logits: Tensor, labels: Tensor) -> Tensor:
        """:func:`classification_loss`."""
        return classification_loss(logits, labels)

    def trainable_parameter_groups(self) -> Tuple[list, list]:
        """``(backbone params of stage3-4, classifier params)``.

        The reference trains them with learning rates ``lr`` and ``10 * lr`` (0.1 and 1.0), both
        with weight decay. Only parameters with ``requires_grad`` are listed.
        """
        backbone = [p for m in (self.backbone.layer3, self.backbone.layer4)
                    for p in m.parameters() if p.requires_grad]
        head = [p for p in self.classifier.parameters() if p.requires_grad]
        return backbone, head

    def train(self, mode: bool = True) -> "CAMNet":
        super().train(mode)
        self.backbone.train(mode)  # keeps BatchNorm in eval mode
        return self

    # --- inference --------------------------------------------------------------------------
    def cam(self, x: Tensor) -> Tensor:
        """Class activation maps of one image and its horizontal flip, summed.

        Args:
            x (Tensor[1, 3, H, W] or Tensor[2, 3, H, W]): one normalised image, whose flip is
                built here; or a batch of two that is already ``[image, image.flip(-1)]`` (the
                reference's data loader hands such pairs to the network).

        Returns:
            Tensor[num_classes, ceil(H/16), ceil(W/16)]:
            ``relu(conv(f(image), w)) + relu(conv(f(flipped), w)).flip(-1)`` with ``w`` the
            classifier weight, before any resizing or normalisation (``make_cam`` does those).
        """
        if x.dim() != 4 or x.shape[0] not in (1, 2):
            raise ValueError(f"CAMNet.cam(): expected one image [1, 3, H, W] or an image and its "
                             f"flip [2, 3, H, W], got {tuple(x.shape)}")
        if x.shape[0] == 1:
            x = torch.cat([x, x.flip(-1)], dim=0)
        maps = F.relu(F.conv2d(self.features(x), self.classifier.weight))
        return maps[0] + maps[1].flip(-1)
