"""AffinityNet's affinities from a feature map, as planes of the walk engine (docs/walk_gradient.md).

``a(p, p + o_k) = exp(-mean_c |f_c(p) - f_c(p + o_k)|)`` for the ``D`` half-plane directions
``o_k`` of a radius (``PathIndex(radius).search_dst``, the order of every plane in irnet_fast), laid
out as ``[B, D, h, w]``: :func:`random_walk` (``affinity=``) walks them directly. AffinityNet
forms pairs only from sources inside its crop (rows ``< h - r + 1``, columns
``r - 1 <= x < w - r + 1``): ``region="psa"`` (the default) reproduces that, ``"full"`` keeps every
pair on the grid.
"""
from __future__ import annotations

import numbers
from typing import Tuple

import numpy as np
import torch
from torch import Tensor, nn

from .. import backends
from .._ext import threads_capped_when_busy
from .._checks import check_finite, check_radius, check_tensor, upcast_half
from . import _dispatch
from ._walk_grad import stencil_windows
from .path_index import geometry, geometry_on

REGIONS = ("psa", "full")

__all__ = ["feature_affinity", "feature_affinity_labels", "FeatureAffinity", "region_mask"]


def _dirs(radius: int, device) -> Tensor:
    return geometry_on(radius, device)[0][:, 0].contiguous()


def _check_region(region, *, op: str) -> str:
    if region not in REGIONS:
        raise ValueError(f"{op}(): region expected one of {', '.join(map(repr, REGIONS))}, got {region!r}")
    return region


def region_mask(radius: int, height: int, width: int, region: str = "psa", *, dtype=torch.float32,
                device=None) -> Tensor:
    """``[D, h, w]``: 1 for the pairs ``(p, p + o_k)`` a walk of ``region`` has, else 0."""
    dirs = geometry(radius).search_dst.tolist()
    mask = torch.zeros((len(dirs), height, width), dtype=dtype, device=device)
    rf = geometry(radius).radius_floor
    for k, rows, x0, x1, _, _ in stencil_windows(dirs, height, width):
        if region == "psa":  # sources in the crop: their destinations are all on the grid
            mask[k, :max(0, height - rf), rf:max(rf, width - rf)] = 1
        else:
            mask[k, :rows, x0:x1] = 1
    return mask


def _implementation(name: str, device):
    """The backend's kernels; where the compiled extension has none for the device (built without
    CUDA, or before the op existed), the vectorised torch form, which runs on any device."""
    impl = _dispatch.implementation(name)
    has = getattr(impl, "has_feature_affinity", None)
    if not hasattr(impl, "feature_affinity") or (has is not None and not has(device)):
        return _dispatch.implementation("torch")
    return impl


class _FeatureAffinityFunction(torch.autograd.Function):
    """The backends' forward and backward kernels; the backward recomputes the signs (no
    ``[B, C, D, N]`` intermediate is stored)."""

    @staticmethod
    def forward(ctx, features, impl, dirs):
        affinity = impl.feature_affinity(features, dirs)
        ctx.save_for_backward(features, affinity, dirs)
        ctx.impl = impl
        return affinity

    @staticmethod
    def backward(ctx, grad):
        features, affinity, dirs = ctx.saved_tensors
        return ctx.impl.feature_affinity_backward(grad.contiguous(), features, affinity, dirs), None, None


@threads_capped_when_busy
def feature_affinity(features: Tensor, radius: int = 5, *, region: str = "psa", backend: str = "auto") -> Tensor:
    r"""AffinityNet's affinity planes ``exp(-mean_c |f_c(p) - f_c(p + o_k)|)`` of a feature map.

    Equals the ``aff`` of AffinityNet's head (index_select of every pair) without its
    ``[B, C, D, N]`` intermediates, in the walk engine's layout. Differentiable with respect to
    ``features`` (the sign of a zero difference gives 0, as autograd's ``abs``).

    Args:
        features (Tensor[B, C, h, w]): feature map, ``C >= 1``; float16 / bfloat16 are computed in
            float32 and returned in their own dtype.
        radius (int): search radius (5 in AffinityNet).
        region (str): "psa" (sources inside AffinityNet's crop, its pair set) or "full" (every pair
            on the grid).
        backend (str): "auto" | "cuda" | "cupy" | "cpp" | "numba" | "torch".

    Returns:
        Tensor[B, D, h, w]: ``[:, k, y, x]`` is the affinity of ``(y, x)`` and ``(y, x) + o_k``, 0 for
        pairs outside ``region`` or off the grid; ``random_walk(cam, affinity=...)`` walks it.
    """
    op = "feature_affinity"
    radius = check_radius(radius, op=op)
    region = _check_region(region, op=op)
    dtype = features.dtype if isinstance(features, Tensor) else None
    (features,) = upcast_half(features)
    check_tensor(features, op=op, name="features", dims=["B", "C", "h", "w"])
    if features.shape[1] == 0:
        raise ValueError(f"{op}(): features expected at least one channel, got {tuple(features.shape)}")
    check_finite(features, op=op, name="features")
    impl = _implementation(backends.resolve(backend, features.device, op=op), features.device)
    features = features.contiguous()
    dirs = _dirs(radius, features.device)
    if features.shape[0] == 0 or features.shape[2] == 0 or features.shape[3] == 0 or len(dirs) == 0:
        return features.new_zeros((features.shape[0], len(dirs), *features.shape[2:])).to(dtype)
    affinity = _FeatureAffinityFunction.apply(features, impl, dirs)
    if region == "psa":
        mask = region_mask(radius, *features.shape[2:], region, dtype=affinity.dtype, device=affinity.device)
        affinity = affinity * mask
    return affinity.to(dtype)


class FeatureAffinity(nn.Module):
    """Module twin of :func:`feature_affinity`."""

    def __init__(self, radius: int = 5, *, region: str = "psa", backend: str = "auto"):
        super().__init__()
        self.radius = check_radius(radius, op="FeatureAffinity")
        self.region = _check_region(region, op="FeatureAffinity")
        self.backend = backend

    def forward(self, features: Tensor) -> Tensor:
        return feature_affinity(features, self.radius, region=self.region, backend=self.backend)

    def extra_repr(self) -> str:
        return f"radius={self.radius}, region={self.region!r}, backend={self.backend!r}"


def feature_affinity_labels(segm_map, radius: int = 5, *, region: str = "psa",
                            ignore_from: int = 255) -> Tuple[Tensor, Tensor, Tensor]:
    """AffinityNet's pair labels in the planes of :func:`feature_affinity`.

    ``bg_pos``: both ends background (0); ``fg_pos``: both ends the same class (> 0), ``neg``:
    different labels; pairs with an end labelled ``>= ignore_from`` (255: unsure) count in none.

    Args:
        segm_map (Tensor[h, w] or Tensor[B, h, w] or array, integer): labels on the feature grid.
        radius, region: as :func:`feature_affinity`.
        ignore_from (int): labels >= this are ignored (255 in AffinityNet).

    Returns:
        ``(bg_pos, fg_pos, neg)`` float32 ``[D, h, w]`` (``[B, D, h, w]`` for a batch).
    """
    op = "feature_affinity_labels"
    radius = check_radius(radius, op=op)
    region = _check_region(region, op=op)
    if isinstance(ignore_from, bool) or not isinstance(ignore_from, numbers.Integral):
        raise TypeError(f"{op}(): ignore_from expected an integer label (255 in AffinityNet), got {ignore_from!r}")
    if isinstance(segm_map, np.ndarray):
        segm_map = np.ascontiguousarray(segm_map, dtype=segm_map.dtype.newbyteorder("="))
    if not isinstance(segm_map, (Tensor, np.ndarray)):
        raise TypeError(f"{op}(): segm_map expected a tensor or array [h, w] or [B, h, w], got "
                        f"{type(segm_map).__name__}")
    labels = torch.as_tensor(segm_map)
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"{op}(): segm_map expected an integer label map, got {labels.dtype}")
    if labels.dim() not in (2, 3):
        raise ValueError(f"{op}(): segm_map expected shape [h, w] or [B, h, w], got {tuple(labels.shape)}")
    batched = labels.dim() == 3
    labels = labels.reshape(-1, *labels.shape[-2:]).long()
    batch, height, width = labels.shape
    dirs = geometry(radius).search_dst.tolist()
    out = [torch.zeros((batch, len(dirs), height, width), dtype=torch.float32, device=labels.device)
           for _ in range(3)]
    for k, rows, x0, x1, dy, dx in stencil_windows(dirs, height, width):
        src, dst = labels[:, :rows, x0:x1], labels[:, dy:, x0 + dx:x1 + dx]
        valid = (src < ignore_from) & (dst < ignore_from)
        equal = src == dst
        out[0][:, k, :rows, x0:x1] = (equal & (src == 0)).float()
        out[1][:, k, :rows, x0:x1] = (equal & (src != 0) & valid).float()
        out[2][:, k, :rows, x0:x1] = (~equal & valid).float()
    mask = region_mask(radius, height, width, region, device=labels.device)
    out = [t * mask for t in out]
    return tuple(t if batched else t[0] for t in out)
