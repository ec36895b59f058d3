"""Instance ops (docs/algorithm.md, "Instances") of every backend against the NumPy transcription of the reference."""
import numpy as np
import pytest
import torch
from scipy import ndimage

from irnet_fast import ops
from irnet_fast.ops import _reference as reference

from ..helpers import BACKENDS


def displacement_field(height, width, *, seed=0, centres=4, gain=(0.6, 1.0), noise=1.0, smooth=2.0,
                       dtype=np.float32):
    """A field like IRNet's: every pixel points (with a gain) to the nearest of a few centres,
    plus smooth noise of a pixel or so."""
    rng = np.random.default_rng(seed)
    cy = rng.uniform(0, max(height - 1, 0), centres)
    cx = rng.uniform(0, max(width - 1, 0), centres)
    yy, xx = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    near = ((yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2).argmin(0)
    scale = rng.uniform(*gain, centres)[near]
    field = np.stack([(cy[near] - yy) * scale, (cx[near] - xx) * scale])
    wobble = rng.standard_normal(field.shape)
    if smooth and height * width:
        wobble = ndimage.gaussian_filter(wobble, (0, smooth, smooth)) * smooth
    return (field + noise * wobble).astype(dtype)


def as_input(array, device):
    return array if device == "numpy" else torch.from_numpy(np.ascontiguousarray(array)).to(device)


def to_numpy(result):
    return result.cpu().numpy() if isinstance(result, torch.Tensor) else result


SIZES = [(1, 1), (1, 9), (7, 1), (5, 8), (13, 17), (31, 22)]


# ---------------------------------------------------------------------------- find_centroids

@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("iterations", [0, 1, 7, 300])
def test_centroids_match_reference(backend, device, size, iterations):
    field = displacement_field(*size, seed=sum(size) + iterations)
    expected = reference.find_centroids_with_refinement(field, iterations)
    actual = ops.find_centroids_with_refinement(torch.from_numpy(field).to(device), iterations, backend=backend)
    assert actual.dtype == torch.int32 and actual.device.type == device and actual.shape == (2, *size)
    assert np.array_equal(actual.cpu().numpy(), expected)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("seed,gain,noise,smooth", [(0, (0.6, 1.0), 1.0, 2.0),   # converging, smooth noise
                                                   (1, (0.2, 0.5), 2.0, 3.0),   # slow approach
                                                   (2, (1.5, 1.9), 0.5, 0.0),   # overshoot: cycles
                                                   (3, (0.9, 1.1), 3.0, 0.0)])  # rough noise
def test_centroids_bit_exact_on_realistic_fields(backend, device, seed, gain, noise, smooth):
    """The fast kernels reproduce the reference's float64-weights / float32-centroid arithmetic."""
    size = (24, 33) if backend == "numba" else (47, 63)  # the numba CI runs without the JIT
    field = displacement_field(*size, seed=seed, gain=gain, noise=noise, smooth=smooth, centres=5)
    expected = reference.find_centroids_with_refinement(field, 300)
    actual = ops.find_centroids_with_refinement(torch.from_numpy(field).to(device), backend=backend)
    assert np.array_equal(actual.cpu().numpy(), expected)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_centroids_float64_and_non_contiguous(backend, device):
    field = displacement_field(11, 14, seed=5, dtype=np.float64) * 1.01
    expected = reference.find_centroids_with_refinement(field, 60)
    actual = ops.find_centroids_with_refinement(torch.from_numpy(field).to(device), 60, backend=backend)
    assert np.array_equal(actual.cpu().numpy(), expected)
    wide = displacement_field(14, 11, seed=6)
    transposed = torch.from_numpy(wide).to(device).transpose(1, 2)  # (2, 11, 14), not contiguous
    assert not transposed.is_contiguous()
    expected = reference.find_centroids_with_refinement(np.ascontiguousarray(wide.transpose(0, 2, 1)), 60)
    actual = ops.find_centroids_with_refinement(transposed, 60, backend=backend)
    assert np.array_equal(actual.cpu().numpy(), expected)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("size", [(0, 0), (0, 5), (4, 0)])
def test_centroids_empty(backend, device, size):
    actual = ops.find_centroids_with_refinement(torch.zeros((2, *size), device=device), backend=backend)
    assert actual.shape == (2, *size) and actual.dtype == torch.int32


def test_centroids_numpy_in_numpy_out():
    field = displacement_field(9, 12, seed=2)
    strided = np.stack([field[0].T, field[1].T])[:, ::2]  # a non-contiguous view
    out = ops.find_centroids_with_refinement(strided, 20)
    assert isinstance(out, np.ndarray) and out.dtype == np.int32 and out.shape == strided.shape
    assert np.array_equal(out, reference.find_centroids_with_refinement(np.ascontiguousarray(strided), 20))


def test_centroids_hand_computed():
    """A uniform field of (+0.5, -0.25) moves every pixel by that much per step until clipped."""
    field = np.stack([np.full((3, 4), 0.5, np.float32), np.full((3, 4), -0.25, np.float32)])
    out = ops.find_centroids_with_refinement(field, 3)
    # rows: y + 1.5 clipped to 2 and rounded half to even; columns: x - 0.75 clipped at 0
    assert out[0].tolist() == [[2] * 4, [2] * 4, [2] * 4]  # 1.5 -> 2 (half to even), 2.5 -> 2, 3.5 -> 2
    assert out[1].tolist() == [[0, 0, 1, 2]] * 3          # 0.25 -> 0, 1.25 -> 1, 2.25 -> 2
    assert np.array_equal(out, reference.find_centroids_with_refinement(field, 3))


# ---------------------------------------------------------------------------- cluster_centroids

@pytest.mark.parametrize("backend,device", BACKENDS + [pytest.param("auto", "numpy", id="numpy")])
@pytest.mark.parametrize("size", [(1, 1), (1, 7), (13, 17), (40, 29)])
@pytest.mark.parametrize("thres", [2.5, 1.0])
def test_cluster_centroids_match_reference(backend, device, size, thres):
    field = displacement_field(*size, seed=size[0], centres=6, gain=(0.4, 0.9))
    centroids = reference.find_centroids_with_refinement(field, 50)
    expected = reference.cluster_centroids(centroids, field, thres)
    actual = ops.cluster_centroids(as_input(centroids, device), as_input(field, device), thres, backend=backend)
    assert to_numpy(actual).dtype == bool
    assert to_numpy(actual).shape == expected.shape
    assert np.array_equal(to_numpy(actual), expected)


@pytest.mark.parametrize("backend,device", [pytest.param("torch", "cpu", id="torch")] + BACKENDS[3:])
def test_label_components_numbering(backend, device):
    """Torch labelling numbers components like scipy (raster order of the first pixel), on shapes
    that need many propagation rounds (spiral, comb) and on noise."""
    from irnet_fast.ops import _torch
    spiral = np.zeros((15, 15), bool)
    spiral[0, :] = spiral[:, 14] = spiral[14, :] = spiral[2:, 0] = spiral[2, :13] = spiral[2:13, 12] = True
    spiral[12, 2:13] = spiral[4:13, 2] = spiral[4, 2:11] = True
    comb = np.zeros((9, 20), bool)
    comb[:, ::2] = True
    comb[8, :] = True
    noise = np.random.default_rng(0).random((23, 31)) < 0.55
    for mask in (spiral, comb, noise, np.zeros((3, 4), bool), np.ones((1, 1), bool)):
        labels, count = _torch.label_components(torch.from_numpy(mask).to(device))
        expected, expected_count = ndimage.label(mask, structure=[[0, 1, 0], [1, 1, 1], [0, 1, 0]])
        assert count == expected_count
        assert np.array_equal(labels.cpu().numpy(), expected)


def test_cluster_centroids_hand_computed():
    # weak (norm < 2.5) components: {(0,0),(0,1)} = 1 and {(0,3)} = 2; (0,2) is strong (label 0)
    field = np.zeros((2, 1, 4), np.float32)
    field[1, 0, 2] = 3.0
    centroids = np.array([[[0, 0, 0, 0]], [[1, 0, 3, 2]]], np.int32)
    # centroid labels: 1, 1, 2, 0 -> +1: 2, 2, 3, 1 -> compressed: 1, 1, 2, 0
    out = ops.cluster_centroids(centroids, field)
    assert out.shape == (3, 1, 4)
    assert out.argmax(0).tolist() == [[1, 1, 2, 0]] and out.sum(0).tolist() == [[1, 1, 1, 1]]
    assert np.array_equal(out, reference.cluster_centroids(centroids, field))


# ---------------------------------------------------------------------------- detect_instance

def _instances(num, height, width, seed):
    rng = np.random.default_rng(seed)
    score = rng.random((num, height, width)).astype(np.float32) - 0.2
    mask = ndimage.gaussian_filter(rng.standard_normal((num, height, width)), (0, 1.5, 1.5)) > 0.25
    mask[num // 2] = False  # an empty mask gives no segment
    return score, mask, rng.integers(0, 20, num)


@pytest.mark.parametrize("backend,device", [pytest.param("auto", "numpy", id="numpy")] + BACKENDS)
@pytest.mark.parametrize("max_fragment_size", [0, 6, 1e9])
def test_detect_instance_matches_reference(backend, device, max_fragment_size):
    score, mask, classes = _instances(5, 19, 26, seed=int(max_fragment_size) % 7)
    expected = reference.detect_instance(score, mask, classes, max_fragment_size)
    actual = ops.detect_instance(as_input(score, device), as_input(mask, device), as_input(classes, device),
                                 max_fragment_size, backend=backend)
    assert set(actual) == {"score", "mask", "class"}
    got = {k: to_numpy(v) for k, v in actual.items()}
    assert got["score"].dtype == np.float32 and got["mask"].dtype == bool and got["class"].dtype == np.int64
    assert np.array_equal(got["mask"], expected["mask"])
    assert np.array_equal(got["class"], expected["class"])
    assert np.array_equal(got["score"], expected["score"].astype(np.float32))
    if device != "numpy":
        assert all(v.device.type == device for v in actual.values())


def test_detect_instance_hand_computed():
    score = np.array([[[0.9, 0.1, 0.0, 0.4],
                       [0.2, 0.0, 0.0, 0.8]],
                      [[-0.5, -0.3, 0.7, 0.7],
                       [-0.1, -0.2, 0.7, 0.7]]], np.float32)
    mask = np.array([[[1, 1, 0, 1],
                      [1, 0, 0, 1]],
                     [[1, 1, 0, 0],
                      [1, 1, 0, 0]]], bool)
    out = ops.detect_instance(score, mask, np.array([3, 7]), max_fragment_size=0)
    # mask 0: segments {(0,0),(0,1),(1,0)} max 0.9 and {(0,3),(1,3)} max 0.8; mask 1: one segment
    # of negative scores: the max over the image of score * segment is 0 (pixels outside)
    assert out["score"].tolist() == pytest.approx([0.9, 0.8, 0.0])
    assert out["class"].tolist() == [3, 3, 7]
    assert out["mask"].sum((1, 2)).tolist() == [3, 2, 4]
    small = ops.detect_instance(score, mask, np.array([3, 7]), max_fragment_size=3)
    assert small["score"].tolist() == pytest.approx([0.9, 0.0, 0.0])  # the 2-pixel segment scores 0
    whole = ops.detect_instance(score[1:, :, :2], mask[1:, :, :2], np.array([7]))
    assert whole["score"].tolist() == pytest.approx([-0.1])  # covers the image: no outside zeros


@pytest.mark.parametrize("device", ["numpy", "cpu", pytest.param("cuda", marks=pytest.mark.needs_cuda)])
def test_detect_instance_empty(device):
    for num in (0, 2):
        score = np.zeros((num, 4, 5), np.float32)
        out = ops.detect_instance(as_input(score, device), as_input(score > 1, device),
                                  as_input(np.arange(num), device))
        got = {k: to_numpy(v) for k, v in out.items()}
        assert got["score"].shape == (0,) and got["score"].dtype == np.float32
        assert got["mask"].shape == (0, 4, 5) and got["mask"].dtype == bool
        assert got["class"].shape == (0,) and got["class"].dtype == np.int64


@pytest.mark.parametrize("backend,device", [pytest.param("auto", "numpy", id="numpy")] + BACKENDS)
@pytest.mark.parametrize("size", [(19, 26), (1, 1), (7, 1)])
def test_detect_instance_label_map_matches_reference(backend, device, size):
    rng = np.random.default_rng(size[0] * 31 + size[1])
    num = 6
    score = rng.random((num,) + size).astype(np.float32)
    smooth = ndimage.gaussian_filter(rng.standard_normal((num + 1,) + size), (0, 1.0, 1.0))
    winner = smooth.argmax(0)  # disjoint masks, channel 0 as background, as the instance step makes them
    mask = winner[None] == np.arange(1, num + 1).reshape(-1, 1, 1)
    mask[2] = False
    classes = rng.integers(0, 20, num)
    expected = reference.detect_instance(score, mask, classes, 4) if mask.any() else None
    actual = ops.detect_instance(as_input(score, device), as_input(mask, device), as_input(classes, device), 4,
                                 label_map=True, backend=backend)
    assert set(actual) == {"score", "label", "class"}
    got = {k: to_numpy(v) for k, v in actual.items()}
    assert got["label"].dtype == np.int32 and got["label"].shape == size
    if expected is None:
        assert got["score"].shape == (0,) and not got["label"].any()
        return
    index = np.arange(1, len(expected["score"]) + 1).reshape(-1, 1, 1)
    assert np.array_equal(got["label"][None] == index, expected["mask"])
    assert np.array_equal(got["class"], expected["class"])
    assert np.array_equal(got["score"], expected["score"].astype(np.float32))


def test_detect_instance_label_map_needs_disjoint_masks():
    mask = np.zeros((2, 3, 3), bool)
    mask[0, :2, :2] = mask[1, 1:, 1:] = True
    with pytest.raises(ValueError, match="mask expected disjoint masks with label_map=True, got a pixel inside 2"):
        ops.detect_instance(np.ones((2, 3, 3), np.float32), mask, np.arange(2), label_map=True)
    assert ops.detect_instance(np.ones((2, 3, 3), np.float32), mask, np.arange(2))["mask"].shape == (2, 3, 3)


# ---------------------------------------------------------------------------- separate_score_by_mask

@pytest.mark.parametrize("device", ["numpy", "cpu", pytest.param("cuda", marks=pytest.mark.needs_cuda)])
def test_separate_score_by_mask(device):
    rng = np.random.default_rng(0)
    scores = rng.random((3, 5, 6)).astype(np.float32)
    masks = rng.random((4, 5, 6)) < 0.5
    out = ops.separate_score_by_mask(as_input(scores, device), as_input(masks, device))
    assert tuple(out.shape) == (3, 4, 5, 6)
    assert np.array_equal(to_numpy(out), np.expand_dims(scores, 1) * np.expand_dims(masks, 0))
    assert to_numpy(out).dtype == np.float32


# ---------------------------------------------------------------------------- errors

def test_errors_name_argument_expected_and_got():
    field = displacement_field(4, 5)
    with pytest.raises(ValueError, match=r"displacement expected a floating array of shape \(2, h, w\), got shape \(3, 4, 5\)"):
        ops.find_centroids_with_refinement(np.zeros((3, 4, 5), np.float32))
    with pytest.raises(ValueError, match=r"displacement expected a floating array of shape \(2, h, w\), got .*int64"):
        ops.find_centroids_with_refinement(torch.zeros((2, 4, 5), dtype=torch.int64))
    with pytest.raises(ValueError, match="displacement expected finite values"):
        ops.find_centroids_with_refinement(np.full((2, 3, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"iterations expected an integer in \[0, 2\*\*31\), got -1"):
        ops.find_centroids_with_refinement(field, -1)
    with pytest.raises(TypeError, match="displacement expected a NumPy array or torch.Tensor"):
        ops.find_centroids_with_refinement(field.tolist())
    with pytest.raises(ValueError, match="backend expected one of"):
        ops.find_centroids_with_refinement(field, backend="nope")
    centroids = reference.find_centroids_with_refinement(field, 5)
    with pytest.raises(ValueError, match=r"centroids expected an integer array of shape \(2, h, w\), got .*float32"):
        ops.cluster_centroids(centroids.astype(np.float32), field)
    with pytest.raises(ValueError, match=r"displacement expected shape \(2, 4, 5\) like centroids"):
        ops.cluster_centroids(centroids, field[:, :3])
    with pytest.raises(ValueError, match=r"displacement expected a NumPy array like centroids"):
        ops.cluster_centroids(centroids, torch.from_numpy(field))
    with pytest.raises(ValueError, match=r"centroids expected rows in \[0, 3\]"):
        ops.cluster_centroids(centroids + 10, field)
    score, mask = np.zeros((2, 4, 5), np.float32), np.ones((2, 4, 5), bool)
    with pytest.raises(ValueError, match=r"class_id expected shape \(2,\) \(one per mask\), got shape \(3,\)"):
        ops.detect_instance(score, mask, np.arange(3))
    with pytest.raises(ValueError, match=r"mask expected shape \(2, 4, 5\) like score_map"):
        ops.detect_instance(score, mask[:, :3], np.arange(2))
    with pytest.raises(ValueError, match=r"mask expected a bool array of shape \(N, h, w\), got .*float32"):
        ops.detect_instance(score, mask.astype(np.float32), np.arange(2))
    with pytest.raises(ValueError, match=r"max_fragment_size expected a number >= 0, got -1"):
        ops.detect_instance(score, mask, np.arange(2), -1)
    with pytest.raises(ValueError, match=r"masks expected shape \(U, 4, 5\) like scores"):
        ops.separate_score_by_mask(score, mask[:, :2])
