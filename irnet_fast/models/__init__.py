"""Networks and losses of IRNet: ResNet backbones, the CAM classifier, IRNet (docs/algorithm.md, "Training").

Needs torchvision (for the ResNet building blocks; nothing is downloaded).
"""
from .backbone import (BACKBONES, PretrainedWeightsWarning, ResNetBackbone, build_backbone,
                       load_backbone_weights)
from .cam import CAMNet, classification_loss
from .irn import EdgeDisplacement, IRNet, irn_loss

__all__ = ["BACKBONES", "ResNetBackbone", "build_backbone", "load_backbone_weights",
           "PretrainedWeightsWarning", "CAMNet", "classification_loss", "IRNet", "irn_loss",
           "EdgeDisplacement"]
