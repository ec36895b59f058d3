"""The instance label files (ins_seg/<id>.npz): one label map for the disjoint instances, the
earlier one-mask-per-instance files still read, and clear errors on files that do not fit."""
import numpy as np
import pytest

from irnet_fast._io import save_npz
from irnet_fast.data.instances import (instance_label_map, instance_masks, instance_pixels, is_instance_file,
                                       load_instances)


def _masks(seed=0, size=(9, 13), num=4):
    rng = np.random.default_rng(seed)
    owner = rng.integers(0, num + 1, size)  # 0: no instance
    masks = owner[None] == np.arange(1, num + 1).reshape(-1, 1, 1)
    masks[2] = False  # an instance without pixels stays instance 2
    return masks


def test_label_map_round_trip():
    masks = _masks()
    label = instance_label_map(masks)
    assert label.dtype == np.int32 and label.shape == masks.shape[1:]
    np.testing.assert_array_equal(instance_masks(label, len(masks)), masks)
    np.testing.assert_array_equal(instance_masks(label, [3, 0]), masks[[3, 0]])
    pixels = instance_pixels(label, len(masks))
    for m, where in zip(masks, pixels):
        np.testing.assert_array_equal(where, np.flatnonzero(m))
    assert instance_label_map(np.zeros((0, 2, 3), bool)).shape == (2, 3)
    assert instance_masks(np.zeros((2, 3), np.int32), 0).shape == (0, 2, 3)


def test_overlapping_masks_are_refused():
    masks = np.zeros((2, 3, 3), bool)
    masks[0, :2] = masks[1, 1:] = True
    with pytest.raises(ValueError, match="masks expected disjoint masks"):
        instance_label_map(masks)


def test_both_file_formats_read_the_same(tmp_path):
    masks = _masks(1)
    score = np.array([0.9, 0.0, 0.5, 0.7], np.float32)
    cls = np.array([3, 1, 1, 0], np.int64)
    save_npz(tmp_path / "new.npz", {"score": score, "label": instance_label_map(masks), "class": cls})
    save_npz(tmp_path / "old.npz", {"score": score, "mask": masks, "class": cls}, compress=True)
    new, old = load_instances(tmp_path / "new.npz"), load_instances(tmp_path / "old.npz")
    assert set(new) == set(old) == {"score", "label", "class"}
    for key in new:
        np.testing.assert_array_equal(new[key], old[key])
    assert is_instance_file(tmp_path / "new.npz") and is_instance_file(tmp_path / "old.npz")


def test_bad_files(tmp_path):
    masks = _masks(2)
    save_npz(tmp_path / "overlap.npz", {"score": np.ones(2, np.float32), "mask": np.ones((2, 3, 3), bool),
                                        "class": np.zeros(2, np.int64)})
    with pytest.raises(ValueError, match="overlap.npz: instance_label_map.*disjoint"):
        load_instances(tmp_path / "overlap.npz")
    save_npz(tmp_path / "keys.npz", {"score": np.ones(2, np.float32)})
    with pytest.raises(KeyError, match=r"keys.npz: expected the arrays \['score', 'label', 'class'\]"):
        load_instances(tmp_path / "keys.npz")
    assert not is_instance_file(tmp_path / "keys.npz")
    save_npz(tmp_path / "count.npz", {"score": np.ones(2, np.float32), "label": instance_label_map(masks),
                                      "class": np.zeros(2, np.int64)})
    with pytest.raises(ValueError, match=r"count.npz: score \(2,\), class \(2,\) int64 and a label map \(9, 13\) "
                                         r"int32 of values up to 4 do not describe"):
        load_instances(tmp_path / "count.npz")
    save_npz(tmp_path / "negative.npz", {"score": np.ones(1, np.float32), "label": -np.ones((2, 2), np.int32),
                                         "class": np.zeros(1, np.int64)})
    with pytest.raises(ValueError, match="values in \\[0, P\\]"):
        load_instances(tmp_path / "negative.npz")
