"""Datasets and transforms: PASCAL VOC 2012, MS-COCO 2014, Cityscapes, and synthetic generators
of the VOC and Cityscapes layouts.

``data`` depends on ``ops`` only (for the affinity labels), never on ``models`` or ``pipeline``.
"""
from . import transforms
from .cityscapes import NUM_CITYSCAPES_CLASSES, TRAIN_CLASSES as CITYSCAPES_CLASSES, Cityscapes
from .coco import COCO_NUM_CLASSES, COCO2014, COCOClassificationDataset, COCOInferenceDataset
from .synthetic_cityscapes import generate as generate_synthetic_cityscapes
from .synthetic import generate as generate_synthetic
from .voc import (NUM_VOC_CLASSES, VOC_CLASSES, VOC12, AffinityDataset, ClassificationDataset,
                  CorruptImageError, InferenceDataset, VOC12AffinityDataset,
                  VOC12ClassificationDataset, VOC12InferenceDataset, load_image, load_label_png,
                  load_labels_file, read_image_list)

__all__ = [
    "transforms", "VOC_CLASSES", "NUM_VOC_CLASSES", "VOC12", "CorruptImageError", "load_image",
    "load_label_png", "load_labels_file", "read_image_list", "ClassificationDataset",
    "InferenceDataset", "AffinityDataset", "VOC12ClassificationDataset", "VOC12InferenceDataset",
    "VOC12AffinityDataset", "COCO2014", "COCO_NUM_CLASSES", "COCOClassificationDataset",
    "COCOInferenceDataset", "generate_synthetic", "Cityscapes", "CITYSCAPES_CLASSES", "NUM_CITYSCAPES_CLASSES",
    "generate_synthetic_cityscapes",
]
