"""The final semantic network: DeepLab's construction against torchvision's own, its test-time
augmentation, the CRF on probabilities, and the held-out rule of eval_sem. The training and the
evaluation run end to end in tests/pipeline/test_steps.py."""
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from irnet_fast.crf import crf_available, crf_inference_prob
from irnet_fast.errors import InputValueError
from irnet_fast.models import PretrainedWeightsWarning
from irnet_fast.models.deeplab import build_deeplab
from irnet_fast.pipeline import Config
from irnet_fast.pipeline.eval_sem import eval_sem, predict_semantic


def _quiet_build(*args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PretrainedWeightsWarning)
        return build_deeplab(*args, **kw)


@pytest.mark.parametrize("name,stride", [("resnet18", 16), ("resnet18", 8)])
def test_dilated_basic_block_network_is_the_strided_one_densely(name, stride):
    """Removing a stride and dilating what follows evaluates the same network on a denser grid: the
    dilated features at every (32 / stride)-th position equal torchvision's plain ResNet's (output
    stride 32), whose weights they share. Odd input size on purpose."""
    from torchvision.models import resnet
    from torchvision.models._utils import IntermediateLayerGetter

    torch.manual_seed(0)
    model = _quiet_build(3, name, output_stride=stride).eval()
    plain = IntermediateLayerGetter(getattr(resnet, name)(weights=None), {"layer4": "out"}).eval()
    plain.load_state_dict(model.backbone.state_dict())
    x = torch.randn(1, 3, 67, 45)
    with torch.no_grad():
        dense = model.backbone(x)["out"]
        coarse = plain(x)["out"]
    step = 32 // stride
    assert dense.shape[-2:] == (-(-67 // stride), -(-45 // stride))
    torch.testing.assert_close(dense[..., ::step, ::step], coarse, rtol=1e-4, atol=1e-4)


def test_resnet50_deeplab_is_torchvisions():
    from torchvision.models.segmentation import deeplabv3_resnet50

    torch.manual_seed(1)
    ours = _quiet_build(5, "resnet50", output_stride=8).eval()
    theirs = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=5, aux_loss=False).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(1, 3, 33, 41)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)["out"], theirs(x)["out"])
    assert ours(x)["out"].shape == (1, 5, 33, 41)


def test_imagenet_weights_from_a_local_file(tmp_path):
    from torchvision.models import resnet

    torch.manual_seed(2)
    saved = resnet.resnet18(weights=None).state_dict()  # as torchvision writes an ImageNet checkpoint (fc too)
    torch.save(saved, tmp_path / "r18.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PretrainedWeightsWarning)
        model = build_deeplab(4, "resnet18", tmp_path / "r18.pth", output_stride=16)
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, saved[key]), key
    with pytest.warns(PretrainedWeightsWarning, match="without pretrained weights"):
        build_deeplab(4, "resnet18")
    with pytest.raises(FileNotFoundError, match="backbone weights not found"):
        build_deeplab(4, "resnet18", tmp_path / "missing.pth")
    with pytest.raises(RuntimeError, match="do not match resnet34"):
        build_deeplab(4, "resnet34", tmp_path / "r18.pth")
    with pytest.raises(ValueError, match="output_stride must be 8 or 16"):
        _quiet_build(4, "resnet18", output_stride=32)


class _Pointwise(nn.Module):
    """Logits of a pixel from its own colour only (a 1x1 convolution): resizing and mirroring the
    input change the prediction only through resampling."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[4.0, 0, 0], [-4.0, 0, 0]])[..., None, None])
            self.conv.bias.zero_()

    def forward(self, x):
        return {"out": self.conv(x)}


def test_predict_semantic_multi_scale_and_flip():
    image = np.zeros((20, 30, 3), np.uint8)
    image[:, :12] = 255  # left: class 0 (red high), right: class 1
    model = _Pointwise().eval()
    single = predict_semantic(model, image)
    x = torch.from_numpy(((image / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225]))
                         .astype(np.float32)).permute(2, 0, 1)[None]
    expected = torch.softmax(model(x)["out"], 1)[0].detach().numpy()
    np.testing.assert_allclose(single, expected, rtol=1e-5, atol=1e-6)
    tta = predict_semantic(model, image, scales=(0.5, 1.0, 1.5), flip=True)
    assert tta.shape == (2, 20, 30) and tta.dtype == np.float32
    np.testing.assert_allclose(tta.sum(0), 1.0, atol=1e-5)
    away = np.r_[0:9, 15:30]  # away from the edge the resampled passes agree with the single one
    np.testing.assert_allclose(tta[:, :, away], single[:, :, away], atol=1e-3)
    assert (tta.argmax(0) == single.argmax(0)).mean() > 0.95


@pytest.mark.skipif(not crf_available(), reason="needs pydensecrf2")
def test_crf_on_probabilities_follows_the_image():
    rng = np.random.default_rng(0)
    image = np.zeros((24, 32, 3), np.uint8)
    image[:, 16:] = 200
    truth = (np.arange(32) >= 16)[None].repeat(24, 0)
    p1 = np.where(truth, 0.7, 0.3) + rng.uniform(-0.3, 0.3, truth.shape)  # noisy, right on average
    probs = np.stack([1 - p1, p1]).astype(np.float32)
    refined = crf_inference_prob(image, probs)
    assert refined.shape == probs.shape and refined.dtype == np.float32
    assert (probs.argmax(0) == truth).mean() < 0.9
    assert (refined.argmax(0) == truth).mean() > 0.99
    with pytest.raises(ValueError, match="labels expected shape"):
        crf_inference_prob(image, probs[:, :10])


def test_eval_split_must_be_held_out(tmp_path):
    from irnet_fast.data import generate_synthetic

    root = generate_synthetic(tmp_path / "data", num_train=3, num_val=2, size=(32, 40))
    cfg = Config(dataset_root=str(root), out_dir=str(tmp_path / "out"), infer_split="train", device="cpu")
    with pytest.raises(InputValueError, match="is the training split"):
        eval_sem(cfg.override(heldout_split="train"), progress=False)
    with pytest.raises(InputValueError, match="share 3 images with the training split"):
        eval_sem(cfg.override(heldout_split="trainval"), progress=False)
