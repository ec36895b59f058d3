"""IRNet's loss computed the reference's dense way (index arrays, gather + max-pool).

Ground truth for the tests of :func:`irnet_fast.models.irn.irn_loss` and the "reference" row of
its benchmark; it materialises the path index arrays, so keep inputs small.
"""
from __future__ import annotations

import numpy as np
import torch

from ..ops import _reference
from ..ops.path_index import PathIndex

__all__ = ["dense_irn_loss"]


def dense_irn_loss(edge, disp, label_map, radius=10):
    """The reference formula the dense way: path index arrays, gather + max-pool, GetAffinityLabel."""
    height, width = edge.shape[-2:]
    path_index = PathIndex(radius=radius, default_size=(height, width))
    labels = [_reference.affinity_labels(m.numpy(), path_index.src_indices, path_index.dst_indices)
              for m in label_map]
    bg_label, fg_label, neg_label = (torch.stack([lab[i] for lab in labels]).to(edge.dtype) for i in range(3))
    aff = _reference.edge_to_affinity(torch.sigmoid(edge), path_index.path_indices)
    pos_aff_loss = (-1) * torch.log(aff + 1e-5)
    neg_aff_loss = (-1) * torch.log(1. + 1e-5 - aff)
    bg_pos = torch.sum(bg_label * pos_aff_loss) / (torch.sum(bg_label) + 1e-5)
    fg_pos = torch.sum(fg_label * pos_aff_loss) / (torch.sum(fg_label) + 1e-5)
    pos = bg_pos / 2 + fg_pos / 2
    neg = torch.sum(neg_label * neg_aff_loss) / (torch.sum(neg_label) + 1e-5)
    pair = _reference.to_pair_displacement(path_index, disp)
    target = torch.from_numpy(np.transpose(path_index.search_dst)).to(disp.dtype)
    target = target.unsqueeze(0).unsqueeze(-1)
    dp_fg = torch.sum(torch.abs(pair - target) * torch.unsqueeze(fg_label, 1)) / (2 * torch.sum(fg_label) + 1e-5)
    dp_bg = torch.sum(torch.abs(pair) * torch.unsqueeze(bg_label, 1)) / (2 * torch.sum(bg_label) + 1e-5)
    total = (pos + neg) / 2 + (dp_fg + dp_bg) / 2
    return {"pos_aff": pos, "neg_aff": neg, "dp_fg": dp_fg, "dp_bg": dp_bg, "total": total}
