"""The reference algorithm, dense and in pure PyTorch, exactly as REFERENCE.md states it.

Ground truth for the tests and the "reference" row of the benchmarks. It materialises the
index arrays and the dense N x N transition matrix, so keep inputs small (<= 64 x 64).
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .path_index import PathIndex

__all__ = ["edge_to_affinity", "affinity_sparse2dense", "to_transition_matrix",
           "propagate_to_edge", "affinity_labels", "to_pair_displacement"]


def edge_to_affinity(edge: torch.Tensor, paths_indices: Sequence) -> torch.Tensor:
    """Gather the boundary along every path, max-pool over the path, return ``1 - max``.

    ``edge``: ``(B, ...)`` flattened to ``(B, H*W)``; returns ``(B, D, M)``.
    """
    edge = edge.reshape(edge.size(0), -1)
    if len(paths_indices) == 0:  # radius 1: no directions (the reference itself fails here)
        return edge.new_zeros((edge.size(0), 0, 0))
    affinities = []
    for indices in paths_indices:
        indices = torch.as_tensor(indices, device=edge.device)
        gathered = torch.index_select(edge, dim=-1, index=indices.reshape(-1))
        gathered = gathered.view(edge.size(0), *indices.shape)  # (B, n_dirs, L, M)
        path_max = F.max_pool2d(gathered, (gathered.size(2), 1)).squeeze(2)
        affinities.append(1 - path_max)
    return torch.cat(affinities, dim=1)


def affinity_sparse2dense(affinity_sparse: torch.Tensor, ind_from, ind_to, n_vertices: int) -> torch.Tensor:
    """Symmetric dense affinity ``(n_vertices, n_vertices)`` with ones on the diagonal."""
    ind_from = torch.as_tensor(ind_from).long()
    ind_to = torch.as_tensor(ind_to).long()
    values = affinity_sparse.reshape(-1).cpu()
    ind_from = ind_from.repeat(ind_to.size(0)).view(-1)
    ind_to = ind_to.reshape(-1)
    diag = torch.arange(n_vertices)
    indices = torch.cat([torch.stack([ind_from, ind_to]), torch.stack([diag, diag]),
                         torch.stack([ind_to, ind_from])], dim=1)
    values = torch.cat([values, torch.ones(n_vertices, dtype=values.dtype), values])
    dense = torch.sparse_coo_tensor(indices, values, (n_vertices, n_vertices),
                                    check_invariants=False).to_dense()
    return dense.to(affinity_sparse.device)


def to_transition_matrix(affinity_dense: torch.Tensor, beta: float, times: int) -> torch.Tensor:
    """``T = A**beta / column sums``, squared ``times`` times: ``T ** (2 ** times)``."""
    scaled = torch.pow(affinity_dense, beta)
    trans_mat = scaled / torch.sum(scaled, dim=0, keepdim=True)
    for _ in range(times):
        trans_mat = torch.matmul(trans_mat, trans_mat)
    return trans_mat


def transition_matrix(edge: torch.Tensor, radius: int = 5, beta: float = 10) -> torch.Tensor:
    """The dense column-stochastic ``T`` of ``propagate_to_edge`` before its powers."""
    height, width = edge.shape[-2:]
    dense_aff = _interior_affinity(edge.reshape(1, height, width), radius)
    return to_transition_matrix(dense_aff, beta, 0)


def _interior_affinity(edge: torch.Tensor, radius: int) -> torch.Tensor:
    height, width = edge.shape[-2:]
    padded_h, padded_w = height + radius, width + 2 * radius
    path_index = PathIndex(radius=radius, default_size=(padded_h, padded_w))
    edge_padded = F.pad(edge, (radius, radius, 0, radius), mode="constant", value=1.0)
    sparse_aff = edge_to_affinity(edge_padded.unsqueeze(0), path_index.path_indices)
    dense_aff = affinity_sparse2dense(sparse_aff, path_index.src_indices, path_index.dst_indices,
                                      padded_h * padded_w)
    dense_aff = dense_aff.view(padded_h, padded_w, padded_h, padded_w)
    dense_aff = dense_aff[:-radius, radius:-radius, :-radius, radius:-radius]
    return dense_aff.reshape(height * width, height * width)


def propagate_to_edge(x: torch.Tensor, edge: torch.Tensor, radius: int = 5, beta: float = 10,
                      exp_times: int = 8) -> torch.Tensor:
    """The reference random walk: ``x (C, h, w)``, ``edge (1, h, w)`` -> ``(C, 1, h, w)``."""
    height, width = x.shape[-2:]
    trans_mat = to_transition_matrix(_interior_affinity(edge, radius), beta=beta, times=exp_times)
    x = x.reshape(-1, height, width) * (1 - edge)
    rw = torch.matmul(x.reshape(-1, height * width), trans_mat)
    return rw.view(rw.size(0), 1, height, width)


def affinity_labels(segm_map, indices_from, indices_to) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reference's ``GetAffinityLabelFromIndices``: ``(bg_pos, fg_pos, neg)`` float32 ``(D, M)``."""
    flat = np.reshape(np.asarray(segm_map), -1)
    label_from = np.expand_dims(flat[indices_from], axis=0)
    label_to = flat[indices_to]
    valid = np.logical_and(np.less(label_from, 21), np.less(label_to, 21))
    equal = np.equal(label_from, label_to)
    pos = np.logical_and(equal, valid)
    bg_pos = np.logical_and(pos, np.equal(label_from, 0)).astype(np.float32)
    fg_pos = np.logical_and(pos, np.greater(label_from, 0)).astype(np.float32)
    neg = np.logical_and(np.logical_not(equal), valid).astype(np.float32)
    return torch.from_numpy(bg_pos), torch.from_numpy(fg_pos), torch.from_numpy(neg)


def to_pair_displacement(path_index: PathIndex, disp: torch.Tensor) -> torch.Tensor:
    """``disp(src) - disp(dst)`` for every direction: ``(B, 2, D, M)``."""
    height, width = disp.size(2), disp.size(3)
    radius_floor = path_index.radius_floor
    crop_h, crop_w = height - radius_floor, width - 2 * radius_floor
    disp_src = disp[:, :, :crop_h, radius_floor:radius_floor + crop_w]
    disp_dst = [disp[:, :, dy:dy + crop_h, radius_floor + dx:radius_floor + dx + crop_w]
                for dy, dx in path_index.search_dst]
    pair = disp_src.unsqueeze(2) - torch.stack(disp_dst, 2)
    return pair.reshape(pair.size(0), pair.size(1), pair.size(2), -1)
