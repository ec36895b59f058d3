"""Bad configs, damaged files and hostile annotation files: clear errors, never trusted output."""
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from irnet_fast._io import is_valid_npz, remove_stale_temporaries, save_npz
from irnet_fast.data.coco import COCO2014
from irnet_fast.data.voc import load_labels_file
from irnet_fast.pipeline import Config, ConfigError
from irnet_fast.pipeline.common import failed_images, is_valid_weights


@pytest.mark.parametrize("key,value,expected", [
    ("walk_radius", 0, r"integer in \[1, 64\]"),
    ("radius", 400, r"integer in \[1, 64\]"),
    ("exp_times", 40, r"integer in \[0, 16\]"),
    ("beta", 0.0, "> 0"),
    ("centroid_iterations", -1, ">= 0"),
    ("min_instance_fraction", -1.0, r"\[0, 1\]"),
    ("centroid_thres", float("nan"), "> 0"),
    ("cam_scales", [0.0], "> 0"),
    ("sem_seg_bg_thres", float("nan"), r"\[0, 1\]"),
    ("walk_batch", 0, ">= 1"),
    ("aff_feature_dim", 3, ">= 4"),
    ("bn_calibration_batches", -1, ">= 0"),
    ("cam_crop_size", 0, ">= 16"),
    ("cam_resize_long", [640, 320], "low <= high"),
    ("momentum", 1.5, r"\[0, 1\)"),
    ("backend", "gpu", "one of"),
    ("device", "tpu", "cuda:N"),
])
def test_config_values_are_checked_up_front(key, value, expected):
    with pytest.raises(ConfigError, match=rf"config key '{key}': expected .*{expected}.*got"):
        Config().override({key: value})
    with pytest.raises(ConfigError, match=key):
        Config(**{key: tuple(value) if isinstance(value, list) else value})


def test_config_defaults_pass_validation():
    assert Config().validate() == Config()


def test_binary_toml_names_the_file(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_bytes(b"\xff\xfe\x00binary\x80")
    with pytest.raises(ConfigError, match=f"config file {path}"):
        Config.from_toml(path)


def test_invalid_json_labels_file_names_the_file(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=f"labels file {path}: invalid JSON"):
        load_labels_file(path)


def _npz(tmp_path, **arrays):
    path = tmp_path / "a.npz"
    save_npz(path, arrays or {"x": np.arange(1000, dtype=np.float32)})
    return path


def test_npz_validity_reads_every_array(tmp_path):
    path = _npz(tmp_path)
    assert is_valid_npz(path, ("x",)) and not is_valid_npz(path, ("x", "y"))
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("x.npy")
    offset = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200
    data[offset] ^= 0xFF  # one flipped byte inside the array: the directory still reads
    path.write_bytes(bytes(data))
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist() == ["x.npy"]
    assert not is_valid_npz(path, ("x",))
    truncated = tmp_path / "t.npz"
    truncated.write_bytes(_npz(tmp_path).read_bytes()[:-300])
    assert not is_valid_npz(truncated)


def test_npz_with_an_object_array_is_not_valid(tmp_path):
    path = tmp_path / "o.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object))
    assert not is_valid_npz(path, ("x",))


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    stale = tmp_path / f".a.npz.tmp{int(dead.stdout)}"
    live = tmp_path / f".b.npz.tmp{os.getpid()}"
    unrelated = tmp_path / ".hidden"
    for p in (stale, live, unrelated):
        p.write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path) == 1
    assert not stale.exists() and live.exists() and unrelated.exists()
    assert remove_stale_temporaries(tmp_path / "missing") == 0


def test_truncated_weights_are_not_a_finished_training(tmp_path):
    good = tmp_path / "cam.pth"
    torch.save({"w": torch.ones(100, 100)}, good)
    assert is_valid_weights(good)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert not is_valid_weights(bad) and not is_valid_weights(tmp_path / "none.pth")


def test_failed_images_reads_a_step_summary(tmp_path):
    (tmp_path / "make_cam.summary.json").write_text(json.dumps({"failed": {"a": "OSError: x"}}))
    (tmp_path / "broken.summary.json").write_text("{")
    assert failed_images(tmp_path, "make_cam") == {"a": "OSError: x"}
    assert failed_images(tmp_path, "broken") == {} and failed_images(tmp_path, "absent") == {}


def _coco(tmp_path, images, anns=()):
    (tmp_path / "img").mkdir(exist_ok=True)
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": images, "annotations": list(anns),
                               "categories": [{"id": 3, "name": "car"}]}))
    return COCO2014(tmp_path / "img", ann)


@pytest.mark.parametrize("file_name", ["../../outside/x.jpg", "/etc/hostname", "a/../../x.jpg", "C:/x.jpg", ""])
def test_coco_file_names_may_not_leave_the_image_folder(tmp_path, file_name):
    with pytest.raises(ValueError, match="file_name"):
        _coco(tmp_path, [{"id": 1, "file_name": file_name, "height": 4, "width": 4}])


def test_coco_same_stem_in_two_folders_stays_two_images(tmp_path):
    box = {"size": [4, 4], "counts": "04000"}
    src = _coco(tmp_path, [{"id": 1, "file_name": "a/img.jpg", "height": 4, "width": 4},
                           {"id": 2, "file_name": "b/img.jpg", "height": 4, "width": 4},
                           {"id": 3, "file_name": "c/other.jpg", "height": 4, "width": 4}],
                [{"id": 10, "image_id": 2, "category_id": 3, "segmentation": box, "iscrowd": 0}])
    assert src.ids == ["a__img", "b__img", "other"]
    assert [len(src.annotations(n)) for n in src.ids] == [0, 1, 0]
    assert src.label("b__img").tolist() == [1.0] and src.label("a__img").tolist() == [0.0]
    assert src.image_path("b__img") == tmp_path / "img" / "b/img.jpg"


def test_coco_duplicate_image_id_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="image id 1 appears twice"):
        _coco(tmp_path, [{"id": 1, "file_name": "x.jpg", "height": 4, "width": 4},
                         {"id": 1, "file_name": "y.jpg", "height": 4, "width": 4}])
