"""The reference algorithm, dense and in pure PyTorch, exactly as docs/algorithm.md states it.

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
           "propagate_to_edge", "affinity_labels", "to_pair_displacement",
           "find_centroids_with_refinement", "cluster_centroids", "detect_instance"]


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


# ----------------------------------------------------------------------------------------------
# Instances (docs/algorithm.md, "Instances"): literal NumPy transcriptions of the reference's make_ins_seg_labels
# helpers. scipy.ndimage.label with a 4-connected structure numbers components in raster order of
# their first pixel, exactly as skimage.measure.label(connectivity=1) does.
# ----------------------------------------------------------------------------------------------

def _label4(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage
    labels, _ = ndimage.label(np.asarray(mask, dtype=bool), structure=[[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    return labels


def reference_to_one_hot(sparse_integers: np.ndarray, maximum_val=None, dtype=bool) -> np.ndarray:
    if maximum_val is None:
        maximum_val = np.max(sparse_integers) + 1
    src_shape = sparse_integers.shape
    flat_src = np.reshape(sparse_integers, [-1])
    src_size = flat_src.shape[0]
    one_hot = np.zeros((maximum_val, src_size), dtype)
    one_hot[flat_src, np.arange(src_size)] = 1
    return np.reshape(one_hot, [maximum_val] + list(src_shape))


def reference_compress_range(arr: np.ndarray) -> np.ndarray:
    uniques = np.unique(arr)
    maximum = np.max(uniques)
    d = np.zeros(maximum + 1, np.int32)
    d[uniques] = np.arange(uniques.shape[0])
    out = d[arr]
    return out - np.min(out)


def find_centroids_with_refinement(displacement: np.ndarray, iterations: int = 300) -> np.ndarray:
    """The reference verbatim: float32 centroids; the weights and sums are float64 (NumPy promotes
    ``float32 - int32``), each update is rounded back to float32 by the in-place add."""
    height, width = displacement.shape[1:3]
    centroid_y = np.repeat(np.expand_dims(np.arange(height), 1), width, axis=1).astype(np.float32)
    centroid_x = np.repeat(np.expand_dims(np.arange(width), 0), height, axis=0).astype(np.float32)
    for _ in range(iterations):
        uy = np.ceil(centroid_y).astype(np.int32)
        dy = np.floor(centroid_y).astype(np.int32)
        y_c = centroid_y - dy
        ux = np.ceil(centroid_x).astype(np.int32)
        dx = np.floor(centroid_x).astype(np.int32)
        x_c = centroid_x - dx
        centroid_y += displacement[0][uy, ux] * y_c * x_c + \
            displacement[0][dy, ux] * (1 - y_c) * x_c + \
            displacement[0][uy, dx] * y_c * (1 - x_c) + \
            displacement[0][dy, dx] * (1 - y_c) * (1 - x_c)
        centroid_x += displacement[1][uy, ux] * y_c * x_c + \
            displacement[1][dy, ux] * (1 - y_c) * x_c + \
            displacement[1][uy, dx] * y_c * (1 - x_c) + \
            displacement[1][dy, dx] * (1 - y_c) * (1 - x_c)
        centroid_y = np.clip(centroid_y, 0, height - 1)
        centroid_x = np.clip(centroid_x, 0, width - 1)
    centroid_y = np.round(centroid_y).astype(np.int32)
    centroid_x = np.round(centroid_x).astype(np.int32)
    return np.stack([centroid_y, centroid_x], axis=0)


def cluster_centroids(centroids: np.ndarray, displacement: np.ndarray, thres: float = 2.5) -> np.ndarray:
    dp_strength = np.sqrt(displacement[1] ** 2 + displacement[0] ** 2)
    height, width = dp_strength.shape
    weak_dp_region = dp_strength < thres
    dp_label = _label4(weak_dp_region)
    dp_label_1d = dp_label.reshape(-1)
    centroids_1d = centroids[0] * width + centroids[1]
    clusters_1d = dp_label_1d[centroids_1d]
    cluster_map = reference_compress_range(clusters_1d.reshape(height, width) + 1)
    return reference_to_one_hot(cluster_map)


def detect_instance(score_map, mask, class_id, max_fragment_size=0):
    """The reference's detect_instance (it raises on an input without any segment)."""
    pred_score, pred_label, pred_mask = [], [], []
    for ag_score, ag_mask, ag_class in zip(score_map, mask, class_id):
        if np.sum(ag_mask) < 1:
            continue
        segments = reference_to_one_hot(_label4(ag_mask))[1:]
        for seg_mask in segments:
            if np.sum(seg_mask) < max_fragment_size:
                pred_score.append(0)
            else:
                pred_score.append(np.max(ag_score * seg_mask))
            pred_label.append(ag_class)
            pred_mask.append(seg_mask)
    return {'score': np.stack(pred_score, 0), 'mask': np.stack(pred_mask, 0), 'class': np.stack(pred_label, 0)}


# ----------------------------------------------------------------------------------------------
# AffinityNet (psa): the pair indices of tool/pyutils, the affinity head's forward of
# network/resnet38_aff and the walk of infer_aff.py, literally (dense: keep inputs small).
# ----------------------------------------------------------------------------------------------

def psa_search_dst(radius: int):
    """AffinityNet's directions in its own order (rows first; not grouped by path length)."""
    search_dst = [(0, x) for x in range(1, radius)]
    for y in range(1, radius):
        for x in range(-radius + 1, radius):
            if x * x + y * y < radius * radius:
                search_dst.append((y, x))
    return search_dst


def psa_indices_of_pairs(radius: int, size):
    """``get_indices_of_pairs(radius, size)``: ``(indices_from [M], indices_to [D * M])`` int64."""
    search_dst = psa_search_dst(radius)
    radius_floor = radius - 1
    full_indices = np.reshape(np.arange(0, size[0] * size[1], dtype=np.int64), (size[0], size[1]))
    cropped_height = size[0] - radius_floor
    cropped_width = size[1] - 2 * radius_floor
    indices_from = np.reshape(full_indices[:-radius_floor, radius_floor:-radius_floor], [-1])
    indices_to_list = []
    for dy, dx in search_dst:
        indices_to = full_indices[dy:dy + cropped_height, radius_floor + dx:radius_floor + dx + cropped_width]
        indices_to_list.append(np.reshape(indices_to, [-1]))
    return indices_from, np.concatenate(indices_to_list, axis=0)


def psa_indices_in_radius(height: int, width: int, radius: int) -> np.ndarray:
    """``get_indices_in_radius(height, width, radius)`` of infer_aff.py: ``[D * M, 2]`` int64."""
    radius_floor = radius - 1
    full_indices = np.reshape(np.arange(0, height * width, dtype=np.int64), (height, width))
    cropped_height, cropped_width = height - radius_floor, width - 2 * radius_floor
    indices_from = np.reshape(full_indices[:-radius_floor, radius_floor:-radius_floor], [-1])
    indices_from_to_list = []
    for dy, dx in psa_search_dst(radius):
        indices_to = full_indices[dy:dy + cropped_height, radius_floor + dx:radius_floor + dx + cropped_width]
        indices_from_to_list.append(np.stack((indices_from, np.reshape(indices_to, [-1])), axis=1))
    return np.concatenate(indices_from_to_list, axis=0)


def psa_affinity(x: torch.Tensor, radius: int = 5, to_dense: bool = False) -> torch.Tensor:
    """The head's forward from features ``x [B, C, h, w]``: ``aff [B, D, M]`` by index_select, or
    with ``to_dense`` (batch of one) the symmetric ``N x N`` matrix with ones on the diagonal."""
    ind_from, ind_to = psa_indices_of_pairs(radius, (x.size(2), x.size(3)))
    ind_from, ind_to = torch.from_numpy(ind_from).to(x.device), torch.from_numpy(ind_to).to(x.device)
    x = x.view(x.size(0), x.size(1), -1)
    ff = torch.index_select(x, dim=2, index=ind_from)
    ft = torch.index_select(x, dim=2, index=ind_to)
    ff = torch.unsqueeze(ff, dim=2)
    ft = ft.view(ft.size(0), ft.size(1), -1, ff.size(3))
    aff = torch.exp(-torch.mean(torch.abs(ft - ff), dim=1))
    if not to_dense:
        return aff
    aff = aff.view(-1)
    ind_from_exp = torch.unsqueeze(ind_from, dim=0).expand(ft.size(2), -1).contiguous().view(-1)
    indices = torch.stack([ind_from_exp, ind_to])
    indices_tp = torch.stack([ind_to, ind_from_exp])
    area = x.size(2)
    indices_id = torch.stack([torch.arange(0, area, device=x.device), torch.arange(0, area, device=x.device)])
    return torch.sparse_coo_tensor(torch.cat([indices, indices_id, indices_tp], dim=1),
                                   torch.cat([aff, torch.ones([area], dtype=aff.dtype, device=x.device), aff]),
                                   (area, area), check_invariants=False).to_dense()


def psa_propagate(cam: torch.Tensor, features: torch.Tensor, beta: float = 8, logt: int = 8,
                  radius: int = 5) -> torch.Tensor:
    """infer_aff.py's walk: ``cam [C, h, w]`` on the feature grid, ``features [1, F, h, w]`` ->
    ``cam.view(C, -1) @ T ** (2 ** logt)`` as ``[C, h, w]``."""
    aff = torch.pow(psa_affinity(features, radius, to_dense=True), beta)
    trans_mat = aff / torch.sum(aff, dim=0, keepdim=True)
    for _ in range(logt):
        trans_mat = torch.matmul(trans_mat, trans_mat)
    cam_vec = cam.reshape(cam.size(0), -1)
    return torch.matmul(cam_vec, trans_mat).view(cam.shape)


def psa_affinity_labels(label: np.ndarray, radius: int = 5):
    """``ExtractAffinityLabelInRadius`` of tool/data (label map ``[h, w]``, 255 ignored):
    ``(bg_pos, fg_pos, neg)`` float32 ``[D, M]``."""
    search_dst = psa_search_dst(radius)
    radius_floor = radius - 1
    crop_height, crop_width = label.shape[0] - radius_floor, label.shape[1] - 2 * radius_floor
    labels_from = np.reshape(label[:-radius_floor, radius_floor:-radius_floor], [-1])
    labels_to_list, valid_pair_list = [], []
    for dy, dx in search_dst:
        labels_to = label[dy:dy + crop_height, radius_floor + dx:radius_floor + dx + crop_width]
        labels_to = np.reshape(labels_to, [-1])
        valid_pair_list.append(np.logical_and(np.less(labels_to, 255), np.less(labels_from, 255)))
        labels_to_list.append(labels_to)
    bc_labels_from = np.expand_dims(labels_from, 0)
    concat_labels_to = np.stack(labels_to_list)
    concat_valid_pair = np.stack(valid_pair_list)
    pos_affinity_label = np.equal(bc_labels_from, concat_labels_to)
    bg_pos = np.logical_and(pos_affinity_label, np.equal(bc_labels_from, 0)).astype(np.float32)
    fg_pos = np.logical_and(np.logical_and(pos_affinity_label, np.not_equal(bc_labels_from, 0)),
                            concat_valid_pair).astype(np.float32)
    neg = np.logical_and(np.logical_not(pos_affinity_label), concat_valid_pair).astype(np.float32)
    return torch.from_numpy(bg_pos), torch.from_numpy(fg_pos), torch.from_numpy(neg)
