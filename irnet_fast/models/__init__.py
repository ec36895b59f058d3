"""Networks and losses of IRNet: ResNet backbones, the CAM classifier, IRNet, layer for layer the
reference's (docs/algorithm.md, "Training"); and torchvision's Mask R-CNN for the final instance model.

Needs torchvision (for the ResNet building blocks; nothing is downloaded).
"""
from .backbone import (BACKBONES, PretrainedWeightsWarning, ResNetBackbone, build_backbone, calibrate_batchnorm,
                       load_backbone_weights)
from .cam import CAMNet, classification_loss
from .irn import EdgeDisplacement, IRNet, MeanShift, irn_loss
from .maskrcnn import MASKRCNN_BACKBONES, MaskRCNNNet, build_maskrcnn, calibrate_backbone
from .reference_format import from_reference_state_dict, to_reference_state_dict

__all__ = ["BACKBONES", "ResNetBackbone", "build_backbone", "load_backbone_weights",
           "PretrainedWeightsWarning", "CAMNet", "classification_loss", "IRNet", "MeanShift", "irn_loss",
           "EdgeDisplacement", "from_reference_state_dict", "to_reference_state_dict", "calibrate_batchnorm",
           "MaskRCNNNet", "build_maskrcnn", "calibrate_backbone", "MASKRCNN_BACKBONES"]
