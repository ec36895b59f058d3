"""PathIndex against hand-computed tables and against a literal transcription of docs/algorithm.md, "Geometry"."""
import math

import numpy as np
import pytest

from irnet_fast.ops import PathIndex
from irnet_fast.ops.path_index import geometry


def literal_paths(radius):
    """Section 1 read literally: Python loops, float division, list sort."""
    dirs = [(0, x) for x in range(1, radius)]
    for y in range(1, radius):
        for x in range(-radius + 1, radius):
            if x * x + y * y < radius ** 2:
                dirs.append((y, x))
    by_len = {}
    for dy, dx in dirs:
        pts = []
        for y in range(min(0, dy), max(0, dy) + 1):
            for x in range(min(0, dx), max(0, dx) + 1):
                if (dy * x - dx * y) ** 2 / (dy * dy + dx * dx) < 1:
                    pts.append([y, x])
        pts.sort(key=lambda p: -abs(p[0]) - abs(p[1]))
        by_len.setdefault(len(pts), []).append(pts)
    return [np.asarray(by_len[n]) for n in sorted(by_len)]


def literal_indices(radius, size):
    rf = int(math.ceil(radius) - 1)
    full = np.arange(size[0] * size[1]).reshape(size)
    ch, cw = size[0] - rf, size[1] - 2 * rf
    out = []
    for group in literal_paths(radius):
        out.append(np.array([[full[dy:dy + ch, rf + dx:rf + dx + cw].reshape(-1) for dy, dx in path]
                             for path in group]))
    src = full[:ch, rf:rf + cw].reshape(-1)
    return out, src, np.concatenate([p[:, 0] for p in out], 0)


def test_radius5_hand_counts():
    pi = PathIndex(5, (12, 15))
    assert pi.radius_floor == 4
    assert pi.num_directions == 34
    # groups by path length, counted by hand from the distance-to-line rule
    assert [g.shape[:2] for g in pi.search_paths] == [(2, 2), (2, 3), (4, 4), (2, 5), (4, 6), (2, 7), (8, 8),
                                                      (6, 10), (4, 11)]
    np.testing.assert_array_equal(pi.search_paths[0][:, 0], [[0, 1], [1, 0]])
    np.testing.assert_array_equal(pi.search_paths[0][:, -1], np.zeros((2, 2)))
    # the diagonal (1, 1) crosses both 4-neighbours, in scan order after the destination
    np.testing.assert_array_equal(pi.search_paths[2][2], [[1, 1], [0, 1], [1, 0], [0, 0]])
    np.testing.assert_array_equal(pi.search_paths[2][1], [[1, -1], [0, -1], [1, 0], [0, 0]])
    # path of (0, 4): destination first, source last
    grouped = [p.tolist() for g in pi.search_paths for p in g]
    assert [[0, 4], [0, 3], [0, 2], [0, 1], [0, 0]] in grouped
    assert all(dy > 0 or (dy == 0 and dx > 0) for dy, dx in pi.search_dst)


def test_radius10_counts():
    assert geometry(10).radius_floor == 9
    expected = 9 + sum(1 for y in range(1, 10) for x in range(-9, 10) if x * x + y * y < 100)
    assert len(geometry(10).search_dst) == expected


@pytest.mark.parametrize("radius,size", [(2, (5, 7)), (5, (12, 15)), (5, (4, 8)),
                                         (10, (20, 31)), (7, (6, 12))])
def test_matches_literal_reference(radius, size):
    pi = PathIndex(radius, size)
    paths = literal_paths(radius)
    assert len(pi.search_paths) == len(paths)
    for got, want in zip(pi.search_paths, paths):
        np.testing.assert_array_equal(got, want)
    want_idx, want_src, want_dst = literal_indices(radius, size)
    for got, want in zip(pi.path_indices, want_idx):
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(pi.src_indices, want_src)
    np.testing.assert_array_equal(pi.dst_indices, want_dst)


def test_radius1_has_no_directions():
    pi = PathIndex(1, (3, 3))
    assert pi.num_directions == 0 and pi.dst_indices.shape == (0, 9)


@pytest.mark.parametrize("radius", [0, -1, 2.5, "5", True])
def test_bad_radius(radius):
    with pytest.raises(ValueError, match=r"radius expected an integer in \[1, 64\]"):
        PathIndex(radius, (10, 10))


def test_bad_size():
    with pytest.raises(ValueError, match=r"default_size expected at least \(4, 8\)"):
        PathIndex(5, (10, 7))
    with pytest.raises(ValueError, match="default_size expected"):
        PathIndex(5, 10)
