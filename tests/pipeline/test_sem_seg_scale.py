"""``sem_seg_scale``: make_sem_seg's IRNet inference on the rescaled image (CAMs resized to its
maps, the walked scores brought back to the image); 1.0 (the paper) leaves everything as it was."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from irnet_fast.pipeline import Config, ConfigError
from irnet_fast.pipeline.inference import irn_and_cam, upsample_scores, upsampled


class _StubIRNet(torch.nn.Module):
    """Stride-4 maps of the image it is given (boundary 0, displacement 0); records the input size."""

    def forward(self, x):
        self.seen = tuple(x.shape[-2:])
        h, w = -(-x.shape[-2] // 4), -(-x.shape[-1] // 4)
        return x.new_zeros((1, h, w)), x.new_zeros((2, h, w))


def _cams(k, h, w):
    return {"keys": np.arange(k), "cam": np.random.default_rng(0).random((k, h, w), dtype=np.float32)}


def test_default_is_the_papers_and_bad_values_are_refused():
    assert Config().sem_seg_scale == 1.0
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match="sem_seg_scale"):
            Config().override({"sem_seg_scale": bad})


def test_irn_and_cam_at_a_scale():
    image = np.zeros((20, 36, 3), np.uint8)
    cams = _cams(2, 5, 9)
    model = _StubIRNet()
    edge, disp, cam = irn_and_cam(model, image, cams, torch.device("cpu"))
    assert model.seen == (20, 36) and edge.shape == (1, 5, 9) and torch.equal(cam, torch.from_numpy(cams["cam"]))
    edge, disp, cam = irn_and_cam(model, image, cams, torch.device("cpu"), 2.0)
    assert model.seen == (40, 72) and edge.shape == (1, 10, 18) and disp.shape == (2, 10, 18)
    expected = F.interpolate(torch.from_numpy(cams["cam"])[None], (10, 18), mode="bilinear", align_corners=False)[0]
    assert cam.shape == (2, 10, 18) and torch.allclose(cam, expected)
    _, _, empty = irn_and_cam(model, image, _cams(0, 5, 9), torch.device("cpu"), 2.0)
    assert empty.shape == (0, 10, 18)


def test_upsample_scores_at_a_scale():
    rw = torch.rand(3, 10, 18)
    assert torch.equal(upsample_scores(rw, (20, 36), 1.0), upsample_scores(rw, (20, 36)))
    up = upsample_scores(rw, (20, 36), 2.0)
    assert up.shape == (3, 20, 36) and up.max() <= 1.0 + 1e-6
    back = F.interpolate(upsampled(rw, (40, 72))[None], (20, 36), mode="bilinear", align_corners=False)[0]
    assert torch.allclose(up, back / back.max())
    assert upsample_scores(rw[:0], (20, 36), 2.0).shape == (0, 20, 36)
