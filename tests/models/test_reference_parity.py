"""The networks against a transcription of the reference's: layer order, checkpoints both ways,
inference padding, the trained parameter set."""
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("torchvision")

from irnet_fast.models import CAMNet, EdgeDisplacement, IRNet  # noqa: E402
from irnet_fast.models.reference_format import (ReferenceFormatError, from_reference_state_dict,  # noqa: E402
                                                to_reference_state_dict)
from irnet_fast.pipeline import Config  # noqa: E402
from irnet_fast.pipeline.checkpoint import export_reference_weights, load_weights  # noqa: E402
from irnet_fast.pipeline.inference import load_edge_displacement  # noqa: E402
from irnet_fast.pipeline.common import inference_model  # noqa: E402

from . import reference_nets as ref  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::irnet_fast.models.PretrainedWeightsWarning")

S = 1.0 / (1.0 + 1e-5) ** 0.5  # GroupNorm of the two values -1, 1 (mean 0, variance 1)


@pytest.fixture(scope="module")
def ref_irn():
    torch.manual_seed(0)
    net = ref.randomize(ref.IRNet(), seed=1)
    with torch.no_grad():
        net.mean_shift.running_mean.copy_(torch.tensor([0.25, -0.5]))
    return net.eval()


@pytest.fixture(scope="module")
def ref_cam():
    torch.manual_seed(0)
    return ref.randomize(ref.CAMNet(), seed=2)


@pytest.fixture(scope="module")
def irn50():
    """A ResNet-50 IRNet whose branch weights the layer-order tests set by hand."""
    return IRNet("resnet50")


def _ours(cls, ref_net, tmp_path, *args):
    path = tmp_path / "ref.pth"
    torch.save(ref_net.state_dict(), path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = cls("resnet50", *args)
    assert load_weights(model, path, "test") == "reference"
    return model


@pytest.fixture(scope="module")
def ours_irn(ref_irn, tmp_path_factory):
    """IRNet loaded from the reference network's state dict file."""
    return _ours(IRNet, ref_irn, tmp_path_factory.mktemp("irn")).eval()


@pytest.fixture(scope="module")
def ours_cam(ref_cam, tmp_path_factory):
    return _ours(CAMNet, ref_cam, tmp_path_factory.mktemp("cam"), 20).eval()


# --------------------------------------------------------------------------------------------
# layer order: hand-set weights on a hand-built input
# --------------------------------------------------------------------------------------------

def _hand_set(block: nn.Sequential, cin: int):
    """conv: every output channel = input channel 0; GroupNorm: scale 1, shift 0."""
    with torch.no_grad():
        block[0].weight.zero_()
        block[0].weight[:, 0] = 1.0
        block[1].weight.fill_(1.0)
        block[1].bias.zero_()
    x = torch.zeros(1, cin, 1, 2)
    x[0, 0] = torch.tensor([-1.0, 1.0])  # GroupNorm turns it into (-S, S) in every channel
    return x


# bilinear (align_corners False) of (-S, S), then the ReLU: interpolated negatives are cut
UP2_THEN_RELU = [0.0, 0.0, 0.5 * S, S]              # ReLU first would give 0, S/4, 3S/4, S
UP4_THEN_RELU = [0.0, 0.0, 0.0, 0.0, 0.25 * S, 0.75 * S, S, S]


@pytest.mark.parametrize("name, cin, expected", [
    ("fc_dp4", 1024, UP2_THEN_RELU), ("fc_dp5", 2048, UP2_THEN_RELU), ("fc_dp6", 768, UP2_THEN_RELU),
    ("fc_edge3", 512, UP2_THEN_RELU), ("fc_edge4", 1024, UP4_THEN_RELU), ("fc_edge5", 2048, UP4_THEN_RELU)])
def test_branch_upsamples_before_the_relu(irn50, name, cin, expected):
    block = getattr(irn50, name)
    x = _hand_set(block, cin)
    with torch.no_grad():
        out = block(x)
    rows = torch.tensor([expected, expected])  # height 1 -> 2 (x2) or 4 (x4): equal rows
    rows = rows if len(expected) == 4 else torch.tensor([expected] * 4)
    torch.testing.assert_close(out[0], rows.expand(out.shape[1], -1, -1), rtol=0, atol=1e-6)


def test_fc_dp7_is_conv_gn_relu_conv(irn50):
    net = irn50
    layers = [(type(m).__name__, tuple(getattr(m, "weight", torch.empty(0)).shape)) for m in net.fc_dp7]
    assert layers == [("Conv2d", (256, 448, 1, 1)), ("GroupNorm", (256,)), ("ReLU", (0,)), ("Conv2d", (2, 256, 1, 1))]
    assert net.fc_dp7[1].num_groups == 16 and net.fc_dp7[0].bias is None and net.fc_dp7[3].bias is None
    x = _hand_set(net.fc_dp7, 448)
    with torch.no_grad():
        net.fc_dp7[3].weight.zero_()
        net.fc_dp7[3].weight[0] = 1.0 / 256
        net.fc_dp7[3].weight[1] = -2.0 / 256
        out = net.fc_dp7(x)
    torch.testing.assert_close(out[0, :, 0], torch.tensor([[0.0, S], [0.0, -2 * S]]), rtol=0, atol=1e-5)


# --------------------------------------------------------------------------------------------
# whole networks and checkpoints
# --------------------------------------------------------------------------------------------

def test_irnet_equals_reference_network(ref_irn, ours_irn):
    ours = ours_irn
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        ref_edge, ref_disp = ref_irn(x)
        edge, disp = ours(x)
        ours.train()
        ref_irn.train()
        edge_t, disp_t = ours(x)
        ref_edge_t, ref_disp_t = ref_irn(x)
        ref_irn.eval()
        ours.eval()
    assert edge.abs().max() > 0.1 and disp.abs().max() > 0.1
    torch.testing.assert_close(edge, ref_edge, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(disp, ref_disp, rtol=1e-5, atol=1e-6)  # mean shift subtracted in eval
    torch.testing.assert_close(disp_t, ref_disp_t, rtol=1e-5, atol=1e-6)  # and not in training
    torch.testing.assert_close(edge_t, ref_edge_t, rtol=1e-5, atol=1e-6)


def test_cam_equals_reference_network(ref_cam, ours_cam):
    ours = ours_cam
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref_cam(x), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours.cam(x[:1]), ref_cam.cam(torch.cat([x[:1], x[:1].flip(-1)])),
                                   rtol=1e-5, atol=1e-6)


def test_checkpoints_both_ways(ref_irn, ref_cam, ours_irn, ours_cam, tmp_path):
    for ref_net, ours, cls in ((ref_irn, ours_irn, IRNet), (ref_cam, ours_cam, CAMNet)):
        ref_state = ref_net.state_dict()
        for key, value in from_reference_state_dict(ref_state).items():
            assert torch.equal(ours.state_dict()[key], value), key
        # back: every name the reference has, loadable strictly, the same tensors
        out = tmp_path / "export.pth"
        assert export_reference_weights(ours, out) == out
        exported = torch.load(out, weights_only=True)
        assert set(exported) == set(ref_state)
        fresh = ref.IRNet() if cls is IRNet else ref.CAMNet()
        fresh.load_state_dict(exported, strict=True)
        for key, value in fresh.state_dict().items():
            assert torch.equal(value, ref_state[key]), key
        # and from a file written here (cam.pth / irn.pth) too
        torch.save(ours.state_dict(), tmp_path / "ours.pth")
        export_reference_weights(tmp_path / "ours.pth", out)
        assert set(torch.load(out, weights_only=True)) == set(ref_state)


def test_reference_checkpoint_variants(ref_irn, tmp_path):
    state = dict(ref_irn.state_dict())
    # the training module's buffers, as in a res50_irn.pth written by train_irn
    state["path_indices0"] = torch.zeros(3, 2, 7, dtype=torch.int64)
    state["disp_target"] = torch.zeros(1, 2, 3, 1)
    # counters missing (older torch), and the first release: mean shift only as fc_dp7's BatchNorm
    first_release = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")
                     and not k.startswith("mean_shift.")}
    first_release["fc_dp7.4.running_var"] = torch.ones(2)
    first_release["fc_dp7.4.num_batches_tracked"] = torch.tensor(7)
    first_release["dp_layers.6.4.running_var"] = torch.ones(2)
    model = IRNet("resnet50")
    for variant in (state, first_release, {f"module.{k}": v for k, v in state.items()}):
        torch.save(variant, tmp_path / "v.pth")
        with torch.no_grad():
            model.mean_shift.running_mean.zero_()
            model.fc_dp6[0].weight.zero_()
        assert load_weights(model, tmp_path / "v.pth", "IRNet") == "reference"
        torch.testing.assert_close(model.mean_shift.running_mean, torch.tensor([0.25, -0.5]))
        assert torch.equal(model.fc_dp6[0].weight, ref_irn.fc_dp6[0].weight)


def test_unknown_layouts_name_the_keys(ref_irn, ref_cam, tmp_path):
    irn = ref_irn.state_dict()
    cases = [
        ({**irn, "extra_head.weight": torch.zeros(1)}, IRNet, "unknown keys .*extra_head.weight"),
        ({"conv.weight": torch.zeros(1), "fc.bias": torch.zeros(1)}, IRNet, r"unknown keys \[conv.weight, fc.bias\]"),
        (irn, CAMNet, "unknown keys .*fc_dp1"),  # an IRNet file given to the CAM steps
        ({k: v for k, v in ref_cam.state_dict().items() if not k.startswith(("classifier", "newly"))}, CAMNet,
         r"missing keys \[classifier.weight\]"),
        ({**{k: v for k, v in IRNet("resnet18").state_dict().items() if not k.startswith("mean_shift")},
          "mean_shift": torch.zeros(2)}, IRNet, "before its displacement branch became the reference's"),
    ]
    for state, cls, match in cases:
        torch.save(state, tmp_path / "bad.pth")
        with pytest.raises(RuntimeError, match=match):
            load_weights(cls("resnet50", *((20,) if cls is CAMNet else ())), tmp_path / "bad.pth", "test")
    with pytest.raises(ReferenceFormatError, match="ResNet-50 only"):
        to_reference_state_dict(IRNet("resnet18").state_dict())
    with pytest.raises(ReferenceFormatError, match="bogus"):
        to_reference_state_dict({**IRNet("resnet50").state_dict(), "bogus": torch.zeros(1)})


def test_steps_load_reference_weights(ref_irn, ref_cam, tmp_path):
    torch.save(ref_cam.state_dict(), tmp_path / "res50_cam.pth")
    torch.save(ref_irn.state_dict(), tmp_path / "res50_irn.pth")
    cam = inference_model(lambda: CAMNet("resnet50", 20), tmp_path / "res50_cam.pth", "CAM", torch.device("cpu"))
    assert torch.equal(cam.classifier.weight, ref_cam.classifier.weight) and not cam.training
    cfg = Config(backbone="resnet50", out_dir=str(tmp_path))
    wrapper = load_edge_displacement(cfg, tmp_path / "res50_irn.pth", torch.device("cpu"))
    assert wrapper.pad_to == 512
    assert torch.equal(wrapper.irnet.fc_edge6.bias, ref_irn.fc_edge6.bias)


# --------------------------------------------------------------------------------------------
# inference padding
# --------------------------------------------------------------------------------------------

def test_padded_sizes():
    net = IRNet("resnet18")
    assert Config().irn_pad_to == 512 and EdgeDisplacement(net).pad_to == 512
    wrapper = EdgeDisplacement(net)
    assert wrapper.padded_size(375, 500) == (512, 512)
    assert wrapper.padded_size(512, 512) == (512, 512)
    assert wrapper.padded_size(513, 300) == (528, 512)   # beyond 512: the next multiple of 16
    assert wrapper.padded_size(600, 700) == (608, 704)
    assert EdgeDisplacement(net, pad_to=0).padded_size(375, 500) == (384, 512)
    assert EdgeDisplacement(net, pad_to=0).padded_size(70, 93) == (80, 96)
    assert EdgeDisplacement(net, pad_to=300).padded_size(290, 301) == (300, 304)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="pad_to expected an integer >= 0"):
            EdgeDisplacement(net, pad_to=bad)


@pytest.mark.parametrize("size", [(375, 500), (512, 512)])
def test_padding_parity_with_reference_edge_displacement(ref_irn, ours_irn, size):
    ours = ours_irn
    torch.manual_seed(1)
    image = torch.randn(1, 3, *size)
    pair = torch.cat([image, image.flip(-1)])
    with torch.no_grad():
        expect_b, expect_d = ref.edge_displacement(ref_irn, pair)
        boundary, disp = EdgeDisplacement(ours)(image)
    assert boundary.shape == (1, (size[0] - 1) // 4 + 1, (size[1] - 1) // 4 + 1)
    torch.testing.assert_close(boundary, expect_b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(disp, expect_d, rtol=1e-5, atol=1e-5)
    if size == (375, 500):  # padding to a multiple of 16 instead changes the output
        with torch.no_grad():
            other_b, _ = EdgeDisplacement(ours, pad_to=0)(image)
        assert (other_b - expect_b).abs().max() > 1e-3


# --------------------------------------------------------------------------------------------
# what trains in the CAM network
# --------------------------------------------------------------------------------------------

def _reference_trained_names(ref_net):
    """Names (ours) of the parameters the reference's optimiser updates: those that get a gradient."""
    ref_net.train()
    ref_net.zero_grad()
    logits = ref_net(torch.randn(2, 3, 64, 64))
    F.multilabel_soft_margin_loss(logits, torch.tensor([[1.0] + [0.0] * 19, [0.0, 1.0] + [0.0] * 18])).backward()
    grads = {k: p for k, p in ref_net.named_parameters() if p.grad is not None}
    return set(from_reference_state_dict(grads, "cam"))


def test_cam_trains_the_reference_parameter_set(ref_cam, tmp_path):
    expected = _reference_trained_names(ref_cam)
    # the reference's set, written out: every parameter of layer3-4 (BatchNorm scale/shift too)
    # and the classifier
    listed = {f"backbone.{name}" for name, _ in CAMNet("resnet50").backbone.named_parameters()
              if name.startswith(("layer3.", "layer4."))} | {"classifier.weight"}
    assert expected == listed
    assert {"backbone.layer3.0.bn1.weight", "backbone.layer4.2.bn3.bias",
            "backbone.layer3.0.downsample.1.weight"} <= expected
    ours = _ours(CAMNet, ref_cam, tmp_path, 20).train()
    backbone, head = ours.trainable_parameter_groups()
    names = {id(p): k for k, p in ours.named_parameters()}
    assert {names[id(p)] for p in backbone + head} == expected
    logits = ours(torch.randn(2, 3, 64, 64))
    F.multilabel_soft_margin_loss(logits, torch.tensor([[1.0] + [0.0] * 19, [0.0, 1.0] + [0.0] * 18])).backward()
    assert {k for k, p in ours.named_parameters() if p.grad is not None} == expected
    # the departure, on request: BatchNorm scale/shift frozen
    frozen = CAMNet("resnet50", 20, train_bn_affine=False)
    names = {id(p): k for k, p in frozen.named_parameters()}
    assert {names[id(p)] for g in frozen.trainable_parameter_groups() for p in g} == \
        {k for k in expected if ".bn" not in k and "downsample.1" not in k}
