"""make_ins_seg's per-image instance extraction, done a chunk of channels at a time, against the
whole-stack formulation (all channels upsampled, one argmax: the reference's order of operations)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from irnet_fast.data.instances import INSTANCE_KEYS, instance_masks
from irnet_fast.ops import detect_instance
from irnet_fast.pipeline import inference
from irnet_fast.pipeline.config import Config
from irnet_fast.pipeline.make_ins_seg import instances_from_walk


def whole_stack(rw, keys, num_clusters, size, bg_thres, fraction):
    up = F.interpolate(rw[None], scale_factor=4, mode="bilinear", align_corners=False)[0][:, :size[0], :size[1]]
    up = up / up.max()
    stack = torch.cat([torch.full((1,) + tuple(size), bg_thres), up])
    shape = torch.argmax(stack, dim=0)
    masks = (shape[None] == torch.arange(1, up.shape[0] + 1).view(-1, 1, 1)).numpy()
    return detect_instance(up.numpy(), masks, np.repeat(np.asarray(keys, np.int64), num_clusters),
                           max_fragment_size=size[0] * size[1] * fraction)


@pytest.mark.parametrize("chunk_bytes", [1, 3 * 4 * 37 * 51, None])
@pytest.mark.parametrize("seed", [0, 1])
def test_chunked_equals_whole_stack(monkeypatch, chunk_bytes, seed):
    gen = torch.Generator().manual_seed(seed)
    keys, clusters, size = np.array([2, 5, 7]), 4, (37, 51)  # odd size: the x4 upsampling is cropped
    rw = torch.rand(len(keys) * clusters, 10, 13, generator=gen) ** 3
    rw[3] = rw[5]  # equal channels: ties must go to the lower channel, as argmax does
    if chunk_bytes is not None:
        monkeypatch.setattr(inference, "CHUNK_BYTES", chunk_bytes)
    cfg = Config(ins_seg_bg_thres=0.2, min_instance_fraction=0.01)
    got = instances_from_walk(rw, keys, clusters, size, cfg)
    want = whole_stack(rw, keys, clusters, size, 0.2, 0.01)
    assert len(inference.channel_chunks(rw.shape[0], size)) == {1: 12, None: 1}.get(chunk_bytes, 4)
    assert want["mask"].shape[0] > 3 and got["label"].dtype == np.int32 and got["label"].shape == size
    # torch's bilinear kernel rounds differently from 8 channels up (a vectorised path): 1 ulp
    np.testing.assert_allclose(got["score"], want["score"], rtol=3e-7, atol=0)
    np.testing.assert_array_equal(got["class"], want["class"])
    # the label map holds the reference's masks, in its order
    np.testing.assert_array_equal(instance_masks(got["label"], len(got["score"])), want["mask"])
    assert got["label"].max() == len(got["score"])
    assert set(got) == set(INSTANCE_KEYS)


def test_no_channels_and_all_background():
    cfg = Config(ins_seg_bg_thres=0.5)
    empty = instances_from_walk(torch.zeros(0, 3, 4), np.zeros(0, np.int64), 0, (9, 14), cfg)
    assert empty["score"].shape == (0,) and empty["score"].dtype == np.float32
    assert empty["label"].shape == (9, 14) and not empty["label"].any()
    assert empty["class"].dtype == np.int64
    zero = instances_from_walk(torch.zeros(2, 3, 4), np.array([1]), 2, (9, 14), cfg)  # all at the background
    assert zero["score"].shape == (0,) and not zero["label"].any()


def test_channel_chunks_cover_every_channel():
    chunks = inference.channel_chunks(10, (1024, 2048), chunk_bytes=3 * 4 * 1024 * 2048)
    assert [(c.start, c.stop) for c in chunks] == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert inference.channel_chunks(0, (4, 4)) == []
    assert [(c.start, c.stop) for c in inference.channel_chunks(2, (4, 4), chunk_bytes=1)] == [(0, 1), (1, 2)]
