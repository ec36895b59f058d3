"""IRNet: boundary and displacement branches on a frozen ResNet, its loss, its inference wrapper.

The networks are layer for layer the reference's (docs/algorithm.md, "Training"). The loss is computed
with the fast ops (:func:`~irnet_fast.ops.path_affinity`)
and a direction-at-a-time displacement L1: no path index arrays or pair tensors are materialised.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import path_affinity
from ..ops.path_index import geometry
from .backbone import PathLike, build_backbone

__all__ = ["IRNet", "MeanShift", "irn_loss", "EdgeDisplacement"]


def _up(scale: int) -> nn.Module:
    return nn.Upsample(scale_factor=scale, mode="bilinear", align_corners=False)


def _head(cin: int, cout: int, groups: int, up: int = 1) -> nn.Sequential:
    """1x1 conv (no bias), GroupNorm, [bilinear upsample x up], ReLU: the upsampling comes before
    the ReLU, as in the reference (so the ReLU sees interpolated values)."""
    layers = [nn.Conv2d(cin, cout, 1, bias=False), nn.GroupNorm(groups, cout)]
    if up > 1:
        layers.append(_up(up))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _crop(x: Tensor, like: Tensor) -> Tensor:
    return x[..., :like.shape[-2], :like.shape[-1]]


class MeanShift(nn.Module):
    """The mean displacement over the training images (buffer ``running_mean``, shape (2,), zero
    until measured after training), subtracted at inference. Same buffer name as the reference's
    ``Net.MeanShift``, so the checkpoint key is ``mean_shift.running_mean`` in both."""

    def __init__(self, num_features: int = 2):
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(num_features))

    def forward(self, disp: Tensor) -> Tensor:
        return disp - self.running_mean.to(disp.dtype).view(1, -1, 1, 1)


class IRNet(nn.Module):
    """Inter-pixel relation network: a boundary logit map and a displacement field at stride 4.

    The backbone (five stage outputs, strides 4, 4, 8, 16, 16) is frozen entirely: no parameter
    requires grad, its features are detached, it stays in eval mode. Channel counts of the branch
    inputs come from ``backbone.out_channels``, so ResNet-18/34 work as well as ResNet-50.

    Boundary branch (``fc_edge1..6``): each stage output -> 1x1 conv to 32 channels, GroupNorm(4),
    bilinear upsampling (align_corners False) by 1, 1, 2, 4, 4 and a ReLU (in that order, as the
    reference), cropped to the stride-4 size; concatenated (160) -> 1x1 conv (with bias) -> 1 logit.

    Displacement branch (``fc_dp1..7``), layer for layer the reference's:

    - ``fc_dp1..3``: 1x1 conv to 64, 128, 256 channels + GroupNorm (8, 16, 16 groups) + ReLU;
    - ``fc_dp4``, ``fc_dp5``: 1x1 conv to 256 + GN(16) + bilinear upsampling x2 + ReLU (stride 16
      to stride 8);
    - ``fc_dp6`` (stride-8 merge): concat of dp3, dp4, dp5 (768) -> 1x1 conv 256 + GN(16) +
      upsampling x2 + ReLU (to stride 4);
    - ``fc_dp7`` (stride-4 merge): concat of dp1, dp2 and that (64 + 128 + 256 = 448) -> 1x1 conv
      256 + GN(16) + ReLU -> 1x1 conv (no bias) to 2 channels.

    Every upsampled map is cropped to the size of the map it is merged with (the upsampled size
    is never smaller). The displacement mean (:class:`MeanShift` ``mean_shift``) is subtracted
    only at inference (eval mode, or ``subtract_mean_shift=True``).

    Parameter names: ``backbone.*`` (torchvision names), ``fc_edge1..6.*``, ``fc_dp1..7.*`` (the
    reference's names and Sequential indices) and ``mean_shift.running_mean``: one to one with a
    reference ``res50_irn.pth`` (whose ``resnet50.*`` is ``backbone.*``), see
    :mod:`irnet_fast.models.reference_format`.

    Args:
        backbone_name (str): "resnet50" (the paper), "resnet34" or "resnet18".
        weights (path, optional): local torchvision ImageNet checkpoint of the backbone.
    """

    stride = 16         # input sizes that are multiples of this give aligned feature maps
    output_stride = 4   # the boundary and displacement maps are at 1/4 resolution

    def __init__(self, backbone_name: str = "resnet50", weights: Optional[PathLike] = None):
        super().__init__()
        self.backbone = build_backbone(backbone_name, weights)
        for param in self.backbone.parameters():
            param.requires_grad_(False)
        self.backbone.eval()
        c = self.backbone.out_channels
        self.fc_edge1 = _head(c[0], 32, 4)
        self.fc_edge2 = _head(c[1], 32, 4)
        self.fc_edge3 = _head(c[2], 32, 4, up=2)
        self.fc_edge4 = _head(c[3], 32, 4, up=4)
        self.fc_edge5 = _head(c[4], 32, 4, up=4)
        self.fc_edge6 = nn.Conv2d(32 * 5, 1, 1, bias=True)
        self.fc_dp1 = _head(c[0], 64, 8)
        self.fc_dp2 = _head(c[1], 128, 16)
        self.fc_dp3 = _head(c[2], 256, 16)
        self.fc_dp4 = _head(c[3], 256, 16, up=2)
        self.fc_dp5 = _head(c[4], 256, 16, up=2)
        self.fc_dp6 = _head(768, 256, 16, up=2)
        self.fc_dp7 = nn.Sequential(nn.Conv2d(448, 256, 1, bias=False), nn.GroupNorm(16, 256),
                                    nn.ReLU(inplace=True), nn.Conv2d(256, 2, 1, bias=False))
        self.mean_shift = MeanShift(2)

    @property
    def edge_layers(self) -> nn.ModuleList:
        return nn.ModuleList([self.fc_edge1, self.fc_edge2, self.fc_edge3, self.fc_edge4,
                              self.fc_edge5, self.fc_edge6])

    @property
    def dp_layers(self) -> nn.ModuleList:
        return nn.ModuleList([self.fc_dp1, self.fc_dp2, self.fc_dp3, self.fc_dp4, self.fc_dp5,
                              self.fc_dp6, self.fc_dp7])

    def trainable_parameter_groups(self) -> Tuple[list, list]:
        """``(boundary branch params, displacement branch params)``.

        The reference trains them with learning rates ``lr`` and ``10 * lr`` (0.1 and 1.0).
        """
        return list(self.edge_layers.parameters()), list(self.dp_layers.parameters())

    def train(self, mode: bool = True) -> "IRNet":
        super().train(mode)
        self.backbone.eval()
        return self

    def features(self, x: Tensor) -> List[Tensor]:
        """The five stage outputs of the frozen backbone (no gradient)."""
        with torch.no_grad():
            return [f.detach() for f in self.backbone(x)]

    def heads(self, feats: Sequence[Tensor]) -> Tuple[Tensor, Tensor]:
        """Boundary logits and displacement (training form, no mean shift) from the stage outputs."""
        x1, x2, x3, x4, x5 = feats
        e1 = self.fc_edge1(x1)
        e2 = _crop(self.fc_edge2(x2), e1)
        e3 = _crop(self.fc_edge3(x3), e1)
        e4 = _crop(self.fc_edge4(x4), e1)
        e5 = _crop(self.fc_edge5(x5), e1)
        edge = self.fc_edge6(torch.cat([e1, e2, e3, e4, e5], dim=1))

        d1 = self.fc_dp1(x1)
        d2 = _crop(self.fc_dp2(x2), d1)
        d3 = self.fc_dp3(x3)
        d4 = _crop(self.fc_dp4(x4), d3)
        d5 = _crop(self.fc_dp5(x5), d3)
        d_up = _crop(self.fc_dp6(torch.cat([d3, d4, d5], dim=1)), d1)
        disp = self.fc_dp7(torch.cat([d1, d2, d_up], dim=1))
        return edge, disp

    def forward(self, x: Tensor, subtract_mean_shift: Optional[bool] = None) -> Tuple[Tensor, Tensor]:
        """``(edge logits (B, 1, h, w), displacement (B, 2, h, w))``, ``h = ceil(ceil(H/2)/2)``.

        ``subtract_mean_shift``: None (default) subtracts ``mean_shift`` in eval mode only.
        """
        edge, disp = self.heads(self.features(x))
        if subtract_mean_shift is None:
            subtract_mean_shift = not self.training
        if subtract_mean_shift:
            disp = self.mean_shift(disp)
        return edge, disp

    def loss(self, edge: Tensor, disp: Tensor, labels: Sequence[Tensor], radius: int = 10) -> Dict[str, Tensor]:
        """:func:`irn_loss`."""
        return irn_loss(edge, disp, labels, radius=radius)


class _AffinityLogLoss(torch.autograd.Function):
    """``sum bg * -log(a + eps)``, ``sum fg * -log(a + eps)``, ``sum neg * -log(1 + eps - a)``.

    One image at a time and nothing but the inputs saved: the (B, D, M) log terms and products
    that autograd would keep are never allocated; the backward writes d/da directly. Each image's
    products are summed by ``torch.sum`` (pairwise, as the reference's whole-batch ``torch.sum``)
    and the per-image sums accumulate in float64: a float32 ``torch.dot`` over the millions of
    pairs of a batch would be about 1e-5 off.
    """

    @staticmethod
    def forward(ctx, aff, bg_label, fg_label, neg_label):
        ctx.save_for_backward(aff, bg_label, fg_label, neg_label)
        sums = aff.new_zeros(3, dtype=torch.float64)
        for a, bg, fg, neg in zip(aff, bg_label, fg_label, neg_label):
            pos_loss = torch.log(a + 1e-5).neg_()
            sums[0] += torch.sum(bg * pos_loss, dtype=torch.float64)
            sums[1] += torch.sum(pos_loss.mul_(fg), dtype=torch.float64)
            sums[2] += torch.sum(torch.log(1.0 + 1e-5 - a).neg_().mul_(neg), dtype=torch.float64)
        sums = sums.to(aff.dtype)
        return sums[0], sums[1], sums[2]

    @staticmethod
    def backward(ctx, grad_bg, grad_fg, grad_neg):
        aff, bg_label, fg_label, neg_label = ctx.saved_tensors
        grad = torch.empty_like(aff)
        for g, a, bg, fg, neg in zip(grad, aff, bg_label, fg_label, neg_label):
            # d/da: -(g_bg bg + g_fg fg) / (a + eps) + g_neg neg / (1 + eps - a)
            torch.mul(bg, grad_bg, out=g).add_(fg * grad_fg).div_(a + 1e-5).neg_()
            g.add_(neg * grad_neg / (1.0 + 1e-5 - a))
        return grad, None, None, None


class _PairDisplacementL1(torch.autograd.Function):
    """``sum |disp(src) - disp(dst_k) - t_k| * fg_k`` and ``sum |disp(src) - disp(dst_k)| * bg_k``.

    The same sums as ``to_pair_displacement`` followed by the L1 terms, one direction at a time:
    memory O(B * H * W) instead of the ``(B, 2, D, M)`` pair tensor and its temporaries; the
    backward recomputes each direction's sign and scatters it into the two windows.
    """

    @staticmethod
    def forward(ctx, disp, fg_label, bg_label, radius):
        ctx.save_for_backward(disp, fg_label, bg_label)
        ctx.radius = radius
        sums = disp.new_zeros(2, dtype=torch.float64)  # float64 over the D directions (see above)
        for src, dst, target, fg, bg in _pair_windows(disp, fg_label, bg_label, radius):
            diff = src - dst
            sums[0] += torch.sum((diff - target).abs_().mul_(fg), dtype=torch.float64)
            sums[1] += torch.sum(diff.abs_().mul_(bg), dtype=torch.float64)
        sums = sums.to(disp.dtype)
        return sums[0], sums[1]

    @staticmethod
    def backward(ctx, grad_fg, grad_bg):
        disp, fg_label, bg_label = ctx.saved_tensors
        grad = torch.zeros_like(disp)
        crop_h, crop_w, rf = _source_window(disp, ctx.radius)
        for k, (src, dst, target, fg, bg) in enumerate(_pair_windows(disp, fg_label, bg_label, ctx.radius)):
            diff = src - dst
            g = torch.sign(diff - target) * fg * grad_fg + torch.sign(diff) * bg * grad_bg
            dy, dx = (int(v) for v in geometry(ctx.radius).search_dst[k])
            grad[:, :, :crop_h, rf:rf + crop_w] += g
            grad[:, :, dy:dy + crop_h, rf + dx:rf + dx + crop_w] -= g
        return grad, None, None, None


def _source_window(disp: Tensor, radius: int):
    rf = geometry(radius).radius_floor
    return disp.shape[2] - rf, disp.shape[3] - 2 * rf, rf


def _pair_windows(disp, fg_label, bg_label, radius):
    """Per direction: source window, destination window, target offset and the two label planes."""
    crop_h, crop_w, rf = _source_window(disp, radius)
    src = disp[:, :, :crop_h, rf:rf + crop_w]
    for k, (dy, dx) in enumerate(geometry(radius).search_dst.tolist()):
        dst = disp[:, :, dy:dy + crop_h, rf + dx:rf + dx + crop_w]
        target = disp.new_tensor([dy, dx]).view(1, 2, 1, 1)
        yield (src, dst, target, fg_label[:, k].view(-1, 1, crop_h, crop_w),
               bg_label[:, k].view(-1, 1, crop_h, crop_w))


def irn_loss(edge: Tensor, disp: Tensor, labels: Sequence[Tensor], radius: int = 10) -> Dict[str, Tensor]:
    """IRNet's four loss terms and their total (docs/algorithm.md, "Training"), with the fast ops.

    Args:
        edge (Tensor[B, 1, H, W]): boundary logits (before the sigmoid).
        disp (Tensor[B, 2, H, W]): displacement field (training form, no mean shift).
        labels: ``(bg_pos, fg_pos, neg)``, each ``(B, D, M)``, from
            ``irnet_fast.ops.path_affinity_labels(label_map (B, H, W), radius)``.
        radius (int): the search radius the labels were made with (10 in the paper).

    Returns:
        dict with ``pos_aff`` (bg and fg positive losses, each averaged over its pairs, halved and
        summed), ``neg_aff``, ``dp_fg``, ``dp_bg`` and ``total = (pos_aff + neg_aff) / 2 +
        (dp_fg + dp_bg) / 2``; also ``bg_pos_aff`` and ``fg_pos_aff`` for logging.
    """
    bg_label, fg_label, neg_label = (t.to(device=edge.device, dtype=edge.dtype) for t in labels)
    aff = path_affinity(torch.sigmoid(edge), radius)
    for name, label in zip(("bg_pos", "fg_pos", "neg"), (bg_label, fg_label, neg_label)):
        if label.shape != aff.shape:
            raise ValueError(f"irn_loss(): {name} label expected shape {tuple(aff.shape)} (B, D, M) for "
                             f"edge {tuple(edge.shape)} and radius {radius}, got {tuple(label.shape)}; "
                             f"make labels with path_affinity_labels(label_map, radius) at the edge size")
    sum_bg_pos, sum_fg_pos, sum_neg = _AffinityLogLoss.apply(aff, bg_label, fg_label, neg_label)
    bg_pos = sum_bg_pos / (torch.sum(bg_label) + 1e-5)
    fg_pos = sum_fg_pos / (torch.sum(fg_label) + 1e-5)
    pos = bg_pos / 2 + fg_pos / 2
    neg = sum_neg / (torch.sum(neg_label) + 1e-5)

    sum_fg, sum_bg = _PairDisplacementL1.apply(disp, fg_label, bg_label, radius)
    dp_fg = sum_fg / (2 * torch.sum(fg_label) + 1e-5)
    dp_bg = sum_bg / (2 * torch.sum(bg_label) + 1e-5)
    total = (pos + neg) / 2 + (dp_fg + dp_bg) / 2
    return {"pos_aff": pos, "neg_aff": neg, "dp_fg": dp_fg, "dp_bg": dp_bg, "total": total,
            "bg_pos_aff": bg_pos, "fg_pos_aff": fg_pos}


class EdgeDisplacement(nn.Module):
    """Inference form of IRNet: boundary probability and displacement of one image.

    Builds ``[image, image.flip(-1)]``, pads both on the right and bottom with zeros (after the
    flip, as the reference's loader does), runs the network, crops to the stride-4 size
    ``((H - 1) // 4 + 1, (W - 1) // 4 + 1)``; boundary = ``sigmoid(edge[0] / 2 +
    edge[1].flip(-1) / 2)`` (flip undone after the crop, as the reference); displacement = that of
    the unflipped image minus ``irnet.mean_shift``. Whatever the wrapped network's mode.

    Padding (:meth:`padded_size`, per axis): a side of at most ``pad_to`` is padded to ``pad_to``
    exactly, a longer one to the next multiple of the network stride (16). The default 512 is the
    reference's: its ``EdgeDisplacement`` pads every image to its crop size, 512 x 512, and the
    padding matters, since GroupNorm statistics and the zero border both change the network's
    output near the image border. The reference cannot handle a side over 512 (its padding becomes
    a crop); irnet_fast pads such a side to a multiple of 16 instead, which departs from nothing
    the reference defines. ``pad_to=0`` pads every side only to the multiple of 16: the cheapest
    choice, for networks trained on small images (the synthetic demo).

    Args:
        irnet (IRNet): the trained network.
        pad_to (int): see above; 512 (default, the reference), 0 for multiples of 16 only.

    ``forward(image (1, 3, H, W))`` -> ``(boundary (1, h, w), displacement (2, h, w))``. Wrap calls
    in ``torch.no_grad()`` for inference.
    """

    def __init__(self, irnet: nn.Module, pad_to: int = 512):
        super().__init__()
        if isinstance(pad_to, bool) or not isinstance(pad_to, int) or pad_to < 0:
            raise ValueError(f"EdgeDisplacement(): pad_to expected an integer >= 0, got {pad_to!r}")
        self.irnet = irnet
        self.pad_to = pad_to

    def padded_size(self, height: int, width: int) -> Tuple[int, int]:
        """The ``(height, width)`` the image is zero-padded to before the network."""
        stride = int(getattr(self.irnet, "stride", 16))
        return tuple(self.pad_to if side <= self.pad_to else -(-side // stride) * stride
                     for side in (int(height), int(width)))

    def forward(self, image: Tensor) -> Tuple[Tensor, Tensor]:
        if image.dim() != 4 or image.shape[0] != 1:
            raise ValueError(f"EdgeDisplacement(): image expected one image [1, C, H, W], got {tuple(image.shape)}")
        height, width = image.shape[-2:]
        out_h, out_w = (height - 1) // 4 + 1, (width - 1) // 4 + 1
        pad_h, pad_w = self.padded_size(height, width)
        pair = torch.cat([image, image.flip(-1)], dim=0)
        pair = F.pad(pair, [0, pad_w - width, 0, pad_h - height])
        edge, disp = self.irnet(pair, subtract_mean_shift=False)
        edge = edge[..., :out_h, :out_w]
        disp = disp[..., :out_h, :out_w]
        boundary = torch.sigmoid(edge[0] / 2 + edge[1].flip(-1) / 2)
        displacement = self.irnet.mean_shift(disp[:1])[0]
        return boundary, displacement

    def extra_repr(self) -> str:
        return f"pad_to={self.pad_to}"
