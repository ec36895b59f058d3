"""The dense CRF of IRNet's IR labels (docs/algorithm.md, "Training"), through pydensecrf2.

``pydensecrf2`` (PyPI; import name ``pydensecrf``) is an optional extra: ``pip install
'irnet_fast[crf]'``. The original ``pydensecrf`` does not build with Cython 3.
"""
from __future__ import annotations

import numpy as np

from .errors import MissingDependencyError

__all__ = ["crf_available", "crf_inference_label", "crf_inference_prob", "CRFUnavailableError", "CRF_INSTALL_HINT"]

CRF_INSTALL_HINT = ("the dense CRF needs pydensecrf2: pip install 'irnet_fast[crf]' (or pip install pydensecrf2); "
            "or set crf = false in the config to skip it (IR labels then differ from the paper's)")


class CRFUnavailableError(MissingDependencyError):
    pass


def crf_available() -> bool:
    try:
        import pydensecrf.densecrf  # noqa: F401
        return True
    except ImportError:
        return False


def _densecrf():
    try:
        import pydensecrf.densecrf as dcrf
        import pydensecrf.utils as utils
    except ImportError as exc:
        raise CRFUnavailableError(CRF_INSTALL_HINT) from exc
    return dcrf, utils


def _check_image(image: np.ndarray, shape, fn: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{fn}(): image expected uint8 (H, W, 3), got {image.dtype} {image.shape}")
    if tuple(shape) != image.shape[:2]:
        raise ValueError(f"{fn}(): labels expected shape {image.shape[:2]}, got {tuple(shape)}")
    return image


def _mean_field(dcrf, image, unary, n_labels, iterations, gaussian, bilateral) -> np.ndarray:
    height, width = image.shape[:2]
    crf = dcrf.DenseCRF2D(width, height, n_labels)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    crf.addPairwiseGaussian(sxy=gaussian[0], compat=gaussian[1])
    crf.addPairwiseBilateral(sxy=bilateral[0], srgb=bilateral[1], rgbim=np.array(image, order="C", copy=True),
                             compat=bilateral[2])  # needs a writable buffer
    return np.array(crf.inference(iterations)).reshape((n_labels, height, width))


def crf_inference_label(image: np.ndarray, labels: np.ndarray, n_labels: int, iterations: int = 10,
                        gt_prob: float = 0.7) -> np.ndarray:
    """Refines a label map with a fully connected CRF (the reference's ``crf_inference_label``).

    Unary from the labels (ground-truth probability ``gt_prob``), a Gaussian kernel (sxy 3,
    compat 3) and a bilateral kernel (sxy 50, srgb 5, compat 10) on the RGB image, ``iterations``
    mean-field steps. Returns the argmax ``int64 (H, W)``.
    """
    dcrf, utils = _densecrf()
    labels = np.asarray(labels)
    image = _check_image(image, labels.shape, "crf_inference_label")
    if n_labels < 1 or (labels.size and (labels.min() < 0 or labels.max() >= n_labels)):
        raise ValueError(f"crf_inference_label(): labels must be in 0..{n_labels - 1}")
    unary = utils.unary_from_labels(labels, n_labels, gt_prob=gt_prob, zero_unsure=False)
    return np.argmax(_mean_field(dcrf, image, unary, n_labels, iterations, (3, 3), (50, 5, 10)), axis=0)


def crf_inference_prob(image: np.ndarray, probs: np.ndarray, iterations: int = 10) -> np.ndarray:
    """DeepLab's dense CRF post-processing of class probabilities ``probs (C, H, W)``: unary
    ``-log p``, a Gaussian kernel (sxy 1, compat 3) and a bilateral kernel (sxy 67, srgb 3,
    compat 4), DeepLab v2's usual VOC values, ``iterations`` mean-field steps. Returns the refined
    probabilities ``float32 (C, H, W)``."""
    dcrf, utils = _densecrf()
    probs = np.asarray(probs, np.float32)
    if probs.ndim != 3 or probs.shape[0] < 1:
        raise ValueError(f"crf_inference_prob(): probs expected (C, H, W) with C >= 1, got {probs.shape}")
    image = _check_image(image, probs.shape[1:], "crf_inference_prob")
    unary = utils.unary_from_softmax(np.clip(probs, 1e-8, 1.0))
    return _mean_field(dcrf, image, unary, probs.shape[0], iterations, (1, 3), (67, 3, 4)).astype(np.float32)
