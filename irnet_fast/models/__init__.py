"""Networks and losses of IRNet: ResNet backbones, the CAM classifier, IRNet, layer for layer the
reference's (docs/algorithm.md, "Training").

Needs torchvision (for the ResNet building blocks; nothing is downloaded).
"""
from .backbone import (BACKBONES, PretrainedWeightsWarning, ResNetBackbone, build_backbone,
                       load_backbone_weights)
from .cam import CAMNet, classification_loss
from .irn import EdgeDisplacement, IRNet, MeanShift, irn_loss
from .reference_format import from_reference_state_dict, to_reference_state_dict

__all__ = ["BACKBONES", "ResNetBackbone", "build_backbone", "load_backbone_weights",
           "PretrainedWeightsWarning", "CAMNet", "classification_loss", "IRNet", "MeanShift", "irn_loss",
           "EdgeDisplacement", "from_reference_state_dict", "to_reference_state_dict"]
