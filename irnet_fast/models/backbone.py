"""ResNet backbones of IRNet: strides (2, 2, 2, 1), frozen BatchNorm, torchvision naming.

The modules are torchvision's own (``torchvision.models.resnet``, built with ``weights=None``;
nothing is ever downloaded), re-parented so that the parameter names are exactly torchvision's
(``conv1.weight``, ``bn1.running_mean``, ``layer3.2.conv2.weight``, ...) without the ``fc``
head. An ImageNet checkpoint saved from torchvision therefore loads from a local file with
:func:`load_backbone_weights`.

Strides (docs/algorithm.md, "Training"): conv1 2, max-pool 2, layer1 1, layer2 2, layer3 2, layer4 1;
the output stride is 16 and layer4 keeps layer3's resolution (no dilation).

Every BatchNorm is frozen: it always normalises with its running statistics (it is kept in
eval mode by :meth:`ResNetBackbone.train`), and by default its affine parameters do not train
(``requires_grad=False``).
"""
from __future__ import annotations

import os
import warnings
from typing import Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor, nn

__all__ = ["ResNetBackbone", "build_backbone", "load_backbone_weights", "calibrate_batchnorm",
           "PretrainedWeightsWarning", "BACKBONES"]

# name -> (torchvision block class name, blocks per stage, out_channels of conv1..layer4)
BACKBONES: Dict[str, Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = {
    "resnet18": ("BasicBlock", (2, 2, 2, 2), (64, 64, 128, 256, 512)),
    "resnet34": ("BasicBlock", (3, 4, 6, 3), (64, 64, 128, 256, 512)),
    "resnet50": ("Bottleneck", (3, 4, 6, 3), (64, 256, 512, 1024, 2048)),
}

PathLike = Union[str, "os.PathLike[str]"]


class PretrainedWeightsWarning(UserWarning):
    """A backbone was built without ImageNet weights (fine for the synthetic data only)."""


def _torchvision_resnet():
    try:
        from torchvision.models import resnet
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("irnet_fast.models needs torchvision for the ResNet building blocks: "
                          "pip install torchvision") from exc
    return resnet


class ResNetBackbone(nn.Module):
    """A torchvision ResNet without its head, strides (2, 2, 2, 1), frozen BatchNorm.

    Args:
        name (str): "resnet50" (IRNet's backbone), "resnet34" or "resnet18" (light CPU use).
        freeze_bn_affine (bool): BatchNorm scale and shift get ``requires_grad=False``
            (default). Their running statistics are never updated either way.

    Attributes:
        name (str), out_channels (tuple[int, ...]): channels of the five stage outputs
        (conv1 block after max-pool, layer1, layer2, layer3, layer4); strides (4, 4, 8, 16, 16).

    ``forward(x)`` returns the list of the five stage outputs.
    """

    strides = (4, 4, 8, 16, 16)
    output_stride = 16

    def __init__(self, name: str = "resnet50", *, freeze_bn_affine: bool = True):
        super().__init__()
        if name not in BACKBONES:
            raise ValueError(f"unknown backbone {name!r}; expected one of {sorted(BACKBONES)}")
        resnet = _torchvision_resnet()
        block_name, layers, out_channels = BACKBONES[name]
        block = getattr(resnet, block_name)
        net = resnet.ResNet(block, list(layers))
        # adopt torchvision's modules under torchvision's names (no fc, no avgpool)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        # layer4 keeps stride 1: the strided conv is conv2 of a Bottleneck (torchvision's v1.5),
        # conv1 of a BasicBlock, plus the 1x1 projection of the shortcut
        first = self.layer4[0]
        strided = first.conv2 if block_name == "Bottleneck" else first.conv1
        strided.stride = (1, 1)
        if first.downsample is not None:
            first.downsample[0].stride = (1, 1)
        self.name = name
        self.out_channels: Tuple[int, ...] = tuple(out_channels)
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
                if freeze_bn_affine:
                    for param in module.parameters():
                        param.requires_grad_(False)

    def train(self, mode: bool = True) -> "ResNetBackbone":
        """Sets the mode of every submodule, except BatchNorm, which stays in eval mode."""
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    def calibrate_batchnorm(self, batches) -> int:
        """Sets every BatchNorm's running statistics to those of ``batches`` (images ``(B, 3, H, W)``);
        see :func:`calibrate_batchnorm`. Returns the number of batches used."""
        return calibrate_batchnorm(self, batches)

    def stem(self, x: Tensor) -> Tensor:
        """conv1, bn1, relu, max-pool: stride 4."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward(self, x: Tensor) -> List[Tensor]:
        x0 = self.stem(x)
        x1 = self.layer1(x0)
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        x4 = self.layer4(x3)
        return [x0, x1, x2, x3, x4]

    def extra_repr(self) -> str:
        return f"name={self.name!r}, strides=(2, 2, 2, 1)"


@torch.no_grad()
def calibrate_batchnorm(module: nn.Module, batches) -> int:
    """Sets every BatchNorm's running statistics in ``module`` to those of ``batches`` (inputs of
    ``module.forward``) and leaves them frozen again (eval mode).

    For a network without pretrained weights: frozen statistics of a random initialisation
    (mean 0, variance 1) leave the activations unnormalised, which makes training from scratch
    slow and unstable. This data-dependent initialisation measures each layer's statistics
    (cumulative average over the batches). Returns the number of batches used.
    """
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.training) for m in norms]
    count = 0
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average
            m.train()
        for x in batches:
            module(x)
            count += 1
    finally:
        for m, (momentum, training) in zip(norms, saved):
            m.momentum = momentum
            m.train(training)
    return count


def load_backbone_weights(model: nn.Module, path: PathLike) -> nn.Module:
    """Loads a torchvision ImageNet checkpoint from a local file into ``model`` (a
    :class:`ResNetBackbone`, or a torchvision ResNet without ``fc``).

    Accepts a raw ``state_dict`` or a dict holding it under ``"state_dict"`` (or ``"model"``);
    a leading ``"module."`` (DataParallel) is stripped; the ``fc.*`` classifier is ignored, and so
    are BatchNorm ``num_batches_tracked`` counters on either side (older checkpoints lack them;
    frozen statistics never read them). Every other key must match: a mismatch raises a ``RuntimeError`` naming the missing and unexpected
    keys. A missing file raises ``FileNotFoundError`` naming the path.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"backbone weights not found: {path!r} (expected a torchvision "
                                f"ImageNet state_dict saved with torch.save)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RuntimeError(f"could not read backbone weights from {path!r}: {exc}") from exc
    state = checkpoint
    if isinstance(checkpoint, Mapping):
        for key in ("state_dict", "model"):
            if key in checkpoint and isinstance(checkpoint[key], Mapping):
                state = checkpoint[key]
                break
    if not isinstance(state, Mapping):
        raise RuntimeError(f"backbone weights {path!r}: expected a state_dict (a mapping of names to "
                           f"tensors), got {type(state).__name__}")
    expected = model.state_dict()
    cleaned = {}
    for key, value in state.items():
        key = key[len("module."):] if key.startswith("module.") else key
        if key.startswith("fc.") or (key.endswith("num_batches_tracked") and key not in expected):
            continue  # the classifier; BatchNorm counters that frozen statistics never read
        cleaned[key] = value
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in cleaned:
            cleaned[key] = value
    missing = sorted(set(expected) - set(cleaned))
    unexpected = sorted(set(cleaned) - set(expected))
    if missing or unexpected:
        raise RuntimeError(
            f"backbone weights {path!r} do not match {_name(model)} (torchvision naming): "
            f"missing keys {_short(missing)}; unexpected keys {_short(unexpected)}")
    mismatched = [f"{k}: file {tuple(cleaned[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in expected if tuple(cleaned[k].shape) != tuple(expected[k].shape)]
    if mismatched:
        raise RuntimeError(f"backbone weights {path!r} do not match {_name(model)}: shape mismatch "
                           f"{_short(mismatched)}")
    model.load_state_dict(cleaned, strict=True)
    return model


def _name(model: nn.Module) -> str:
    return getattr(model, "name", type(model).__name__)


def _short(keys: List[str], limit: int = 8) -> str:
    if not keys:
        return "[]"
    shown = ", ".join(keys[:limit])
    more = f", ... ({len(keys) - limit} more)" if len(keys) > limit else ""
    return f"[{shown}{more}]"


def pretrained_or_warn(model: nn.Module, weights: Optional[PathLike], what: str, where: str) -> nn.Module:
    """Loads the ImageNet weights ``weights`` into ``model``'s backbone, or, without them, warns with a
    :class:`PretrainedWeightsWarning` (pointing at the builder's caller) that ``what`` starts from random
    initialisation and ``where`` the weights can be given."""
    if weights is None:
        warnings.warn(f"{what} backbone built without pretrained weights (random initialisation): fine for the "
                      f"synthetic data, but real data needs ImageNet weights ({where})",
                      PretrainedWeightsWarning, stacklevel=3)
        return model
    return load_backbone_weights(model, weights)


def build_backbone(name: str = "resnet50", weights: Optional[PathLike] = None, *,
                   freeze_bn_affine: bool = True) -> ResNetBackbone:
    """A :class:`ResNetBackbone`, with ImageNet weights from the local file ``weights``.

    Without ``weights`` the network keeps its random initialisation and a
    :class:`PretrainedWeightsWarning` says that real data needs pretrained weights.
    """
    model = ResNetBackbone(name, freeze_bn_affine=freeze_bn_affine)
    pretrained_or_warn(model, weights, name, "pass a local torchvision checkpoint, e.g. --backbone-weights PATH")
    return model
