"""Networks, frozen parameters, weight loading, IRNet loss parity and the inference wrapper."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("torchvision")

from irnet_fast.models import (CAMNet, EdgeDisplacement, IRNet, PretrainedWeightsWarning,  # noqa: E402
                               ResNetBackbone, build_backbone, irn_loss, load_backbone_weights)
from irnet_fast.ops import PathIndex, _reference, path_affinity_labels, to_pair_displacement  # noqa: E402
from irnet_fast.models._reference import dense_irn_loss  # noqa: E402
from irnet_fast.models.irn import MeanShift, _AffinityLogLoss, _PairDisplacementL1  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::irnet_fast.models.PretrainedWeightsWarning")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _bn_modules(module):
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _perturb_bn_stats(module):
    """Non-trivial running statistics, so that eval-mode BN is distinguishable from batch stats."""
    for bn in _bn_modules(module):
        bn.running_mean.uniform_(-0.1, 0.1)
        bn.running_var.uniform_(0.5, 1.5)


# --------------------------------------------------------------------------------------------
# shapes
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, channels", [("resnet18", (64, 64, 128, 256, 512)),
                                            ("resnet34", (64, 64, 128, 256, 512))])
def test_backbone_stages(name, channels):
    net = build_backbone(name)
    assert net.out_channels == channels
    with torch.no_grad():
        outs = net(torch.randn(1, 3, 70, 93))
    # conv strides round up: 70 -> 35 -> 18 -> 9 -> 5 -> 5, 93 -> 47 -> 24 -> 12 -> 6 -> 6
    assert [tuple(o.shape[1:]) for o in outs] == [(channels[0], 18, 24), (channels[1], 18, 24),
                                                  (channels[2], 9, 12), (channels[3], 5, 6),
                                                  (channels[4], 5, 6)]


def test_resnet50_shapes():
    cam = CAMNet("resnet50")
    irn = IRNet("resnet50")
    assert cam.backbone.out_channels == irn.backbone.out_channels == (64, 256, 512, 1024, 2048)
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        assert cam(x).shape == (2, 20)
        assert cam.cam(x[:1]).shape == (20, 3, 3)
        edge, disp = irn(x)
    assert edge.shape == (2, 1, 12, 12) and disp.shape == (2, 2, 12, 12)
    # torchvision's parameter names, no fc
    names = set(cam.backbone.state_dict())
    assert "layer4.2.conv3.weight" in names and "bn1.running_var" in names
    assert not any(n.startswith("fc.") for n in names)


def test_cam_shapes_resnet18():
    net = CAMNet("resnet18", num_classes=5)
    x = torch.randn(3, 3, 64, 64)
    assert net(x).shape == (3, 5)
    with torch.no_grad():
        assert net.cam(torch.randn(1, 3, 70, 93)).shape == (5, 5, 6)
        assert net.cam(torch.randn(2, 3, 64, 64)).shape == (5, 4, 4)
    with pytest.raises(ValueError, match="one image"):
        net.cam(torch.randn(3, 3, 64, 64))


def test_cam_inference_form():
    net = CAMNet("resnet18", num_classes=4).eval()
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        maps = net.cam(x)
        paired = net.cam(torch.cat([x, x.flip(-1)]))
        manual = [F.relu(F.conv2d(net.features(v), net.classifier.weight))[0] for v in (x, x.flip(-1))]
    torch.testing.assert_close(maps, paired)
    torch.testing.assert_close(maps, manual[0] + manual[1].flip(-1))
    assert (maps >= 0).all()


def test_irnet_shapes_resnet18():
    net = IRNet("resnet18")
    edge, disp = net(torch.randn(2, 3, 64, 64))
    assert edge.shape == (2, 1, 16, 16) and disp.shape == (2, 2, 16, 16)
    edge, disp = net(torch.randn(1, 3, 70, 93))  # not a multiple of 16: upsampled maps are cropped
    assert edge.shape == (1, 1, 18, 24) and disp.shape == (1, 2, 18, 24)


def test_mean_shift_only_at_inference():
    net = IRNet("resnet18")
    net.mean_shift.running_mean.copy_(torch.tensor([0.5, -2.0]))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        _, train_disp = net.train()(x)
        _, eval_disp = net.eval()(x)
    torch.testing.assert_close(eval_disp, train_disp - torch.tensor([0.5, -2.0]).view(1, 2, 1, 1))
    assert "mean_shift.running_mean" in net.state_dict()  # the reference's key


# --------------------------------------------------------------------------------------------
# frozen parameters and gradients
# --------------------------------------------------------------------------------------------

def test_backbone_bn_frozen():
    net = build_backbone("resnet18")
    bns = _bn_modules(net)
    assert bns and all(not p.requires_grad for bn in bns for p in bn.parameters())
    _perturb_bn_stats(net)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    assert net.training and all(not bn.training for bn in bns)
    x = torch.randn(2, 3, 64, 64)
    out = net(x)[-1]
    out.sum().backward()
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key  # running stats and counters unchanged
    # eval-mode statistics: a single image gives the same result alone or in a batch
    torch.testing.assert_close(net(x[:1])[-1], out[:1], rtol=1e-4, atol=1e-4)
    # layer4 keeps stride 1
    assert net.layer4[0].conv1.stride == (1, 1) and net.layer4[0].downsample[0].stride == (1, 1)


def test_bn_affine_can_train_when_asked():
    net = ResNetBackbone("resnet18", freeze_bn_affine=False)
    assert all(p.requires_grad for bn in _bn_modules(net) for p in bn.parameters())
    net.train()
    assert all(not bn.training for bn in _bn_modules(net))


def test_cam_gradients():
    net = CAMNet("resnet18", num_classes=3).train()
    _perturb_bn_stats(net)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    logits = net(torch.randn(2, 3, 64, 64))
    loss = net.loss(logits, torch.tensor([[1, 0, 1], [0, 1, 0]]))
    loss.backward()
    b = net.backbone
    for module in (b.conv1, b.bn1, b.layer1, b.layer2):
        assert all(p.grad is None for p in module.parameters())
    backbone_group, head_group = net.trainable_parameter_groups()
    trained = {id(p) for p in net.parameters() if p.grad is not None}
    assert trained == {id(p) for p in backbone_group + head_group}
    assert all(p.grad.abs().sum() > 0 for p in head_group)
    assert {id(p) for p in head_group} == {id(net.classifier.weight)}
    assert not any(p.requires_grad for p in b.conv1.parameters())
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key
    torch.testing.assert_close(loss, F.multilabel_soft_margin_loss(logits, torch.tensor([[1., 0, 1], [0, 1, 0]])))


def test_irnet_gradients_reach_exactly_the_branches():
    net = IRNet("resnet18").train()
    _perturb_bn_stats(net)
    before = {k: v.clone() for k, v in net.backbone.state_dict().items()}
    assert not any(p.requires_grad for p in net.backbone.parameters())
    assert all(not m.training for m in net.backbone.modules())
    edge, disp = net(torch.randn(2, 3, 64, 64))
    labels = path_affinity_labels(_blocky_labels(2, 16, 16, seed=3), radius=5)
    irn_loss(edge, disp, labels, radius=5)["total"].backward()
    assert all(p.grad is None for p in net.backbone.parameters())
    edge_group, dp_group = net.trainable_parameter_groups()
    branch = {id(p) for p in edge_group + dp_group}
    assert branch == {id(p) for p in net.parameters() if p.requires_grad}
    assert {id(p) for p in net.parameters() if p.grad is not None} == branch
    assert not ({id(p) for p in edge_group} & {id(p) for p in dp_group})
    for key, value in net.backbone.state_dict().items():
        assert torch.equal(value, before[key]), key


# --------------------------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------------------------

def test_no_weights_warns():
    with pytest.warns(PretrainedWeightsWarning, match="pretrained"):
        build_backbone("resnet18")


def test_load_torchvision_weights(tmp_path, recwarn):
    import torchvision
    source = torchvision.models.resnet18(weights=None)
    state = source.state_dict()
    for v in state.values():  # make every tensor distinct from a fresh init
        if v.is_floating_point():
            v.add_(torch.rand_like(v))
    raw, wrapped = tmp_path / "raw.pth", tmp_path / "wrapped.pth"
    torch.save(state, raw)
    torch.save({"state_dict": state, "epoch": 3}, wrapped)
    for path in (raw, wrapped):
        net = build_backbone("resnet18", weights=path)
        loaded = net.state_dict()
        assert set(loaded) == {k for k in state if not k.startswith("fc.")}
        for key, value in loaded.items():
            assert torch.equal(value, state[key]), key
    assert not [w for w in recwarn if issubclass(w.category, PretrainedWeightsWarning)]
    # the networks pass weights through
    cam = CAMNet("resnet18", weights=raw)
    assert torch.equal(cam.backbone.layer3[1].conv2.weight, state["layer3.1.conv2.weight"])
    irn = IRNet("resnet18", weights=raw)
    assert torch.equal(irn.backbone.bn1.running_var, state["bn1.running_var"])


def test_load_weights_errors(tmp_path):
    import torchvision
    net = build_backbone("resnet18")
    missing = tmp_path / "nope" / "resnet18.pth"
    with pytest.raises(FileNotFoundError, match="nope"):
        load_backbone_weights(net, missing)
    state = torchvision.models.resnet18(weights=None).state_dict()
    del state["layer2.0.conv1.weight"]
    state["extra.weight"] = torch.zeros(1)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(RuntimeError, match=r"layer2\.0\.conv1\.weight") as info:
        load_backbone_weights(net, bad)
    assert "extra.weight" in str(info.value) and "missing" in str(info.value)
    r50 = tmp_path / "r50.pth"  # the wrong architecture
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), r50)
    with pytest.raises(RuntimeError, match="unexpected"):
        load_backbone_weights(net, r50)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="garbage"):
        load_backbone_weights(net, garbage)


# --------------------------------------------------------------------------------------------
# loss parity with the dense reference formula
# --------------------------------------------------------------------------------------------

def _blocky_labels(batch, height, width, *, seed, block=4, classes=3):
    """Label maps of random blocks: background 0, classes 1..classes, and 255 (unsure)."""
    gen = torch.Generator().manual_seed(seed)
    values = torch.tensor([0, 0, 255] + list(range(1, classes + 1)))
    coarse = values[torch.randint(len(values), (batch, -(-height // block), -(-width // block)), generator=gen)]
    full = coarse.repeat_interleave(block, 1).repeat_interleave(block, 2)
    return full[:, :height, :width].contiguous()


dense_reference_losses = dense_irn_loss


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-5), (torch.float32, 1e-4)])
def test_loss_parity_with_dense_reference(dtype, tol):
    batch, size, radius = 2, 32, 10
    gen = torch.Generator().manual_seed(7)
    edge = (3 * torch.randn(batch, 1, size, size, generator=gen, dtype=torch.float64)).to(dtype)
    disp = (4 * torch.randn(batch, 2, size, size, generator=gen, dtype=torch.float64)).to(dtype)
    label_map = _blocky_labels(batch, size, size, seed=11)
    assert {0, 255} <= set(label_map.unique().tolist()) and label_map.max() < 256

    edge_f, disp_f = edge.clone().requires_grad_(), disp.clone().requires_grad_()
    fast = irn_loss(edge_f, disp_f, path_affinity_labels(label_map, radius=radius), radius=radius)
    edge_d, disp_d = edge.clone().requires_grad_(), disp.clone().requires_grad_()
    dense = dense_reference_losses(edge_d, disp_d, label_map, radius=radius)
    for key in ("pos_aff", "neg_aff", "dp_fg", "dp_bg", "total"):
        assert torch.isfinite(dense[key]) and dense[key] > 0, key
        torch.testing.assert_close(fast[key], dense[key], rtol=tol, atol=tol, msg=key)
    # every term's gradient, with respect to both inputs
    inputs_f, inputs_d = (edge_f, disp_f), (edge_d, disp_d)
    for key in ("pos_aff", "neg_aff", "dp_fg", "dp_bg"):
        g_fast = torch.autograd.grad(fast[key], inputs_f, retain_graph=True, allow_unused=True)
        g_dense = torch.autograd.grad(dense[key], inputs_d, retain_graph=True, allow_unused=True)
        for x, gf, gd in zip(inputs_f, g_fast, g_dense):
            gf = torch.zeros_like(x) if gf is None else gf
            gd = torch.zeros_like(x) if gd is None else gd
            torch.testing.assert_close(gf, gd, rtol=tol, atol=tol * 1e-2, msg=key)
    g_fast = torch.autograd.grad(fast["total"], (edge_f, disp_f))
    g_dense = torch.autograd.grad(dense["total"], (edge_d, disp_d))
    for gf, gd in zip(g_fast, g_dense):
        assert gf.abs().sum() > 0
        torch.testing.assert_close(gf, gd, rtol=tol, atol=tol * 1e-2)


def test_loss_sums_accumulate_exactly():
    """The sums over millions of pairs are the float32 rounding of their exact value, as accurate
    as the reference's whole-batch torch.sum (a float32 dot product is several ulps off)."""
    gen = torch.Generator().manual_seed(3)
    shape = (2, 150, 13000)  # a 512 crop at stride 4, radius 10
    aff = torch.rand(shape, generator=gen)
    labels = [(torch.rand(shape, generator=gen) < p).float() for p in (0.3, 0.3, 0.4)]
    sums = _AffinityLogLoss.apply(aff, *labels)
    pos, neg = -torch.log(aff + 1e-5), -torch.log(1.0 + 1e-5 - aff)
    for got, term in zip(sums, (labels[0] * pos, labels[1] * pos, labels[2] * neg)):
        assert got.dtype == torch.float32
        assert torch.equal(got, term.double().sum().float())
    disp = 3 * torch.randn(2, 2, 128, 128, generator=gen)
    num_dirs = PathIndex(10, (128, 128)).num_directions
    fg, bg = ((torch.rand(2, num_dirs, 119 * 110, generator=gen) < p).float() for p in (0.5, 0.3))
    pair = to_pair_displacement(10, disp.double())
    target = torch.from_numpy(PathIndex(10, (128, 128)).search_dst.T.copy()).double().view(1, 2, -1, 1)
    got_fg, got_bg = _PairDisplacementL1.apply(disp, fg, bg, 10)
    assert torch.equal(got_fg, ((pair - target).abs() * fg.double()[:, None]).sum().float())
    assert torch.equal(got_bg, (pair.abs() * bg.double()[:, None]).sum().float())


def test_loss_without_positive_pairs_is_finite():
    edge = torch.randn(1, 1, 24, 24, requires_grad=True)
    disp = torch.randn(1, 2, 24, 24, requires_grad=True)
    label_map = torch.full((1, 24, 24), 255, dtype=torch.long)
    out = irn_loss(edge, disp, path_affinity_labels(label_map, radius=10), radius=10)
    assert all(torch.isfinite(v) and v == 0 for v in out.values())
    out["total"].backward()
    assert torch.isfinite(edge.grad).all() and torch.isfinite(disp.grad).all()
    with pytest.raises(ValueError, match="path_affinity_labels"):
        irn_loss(edge, disp, path_affinity_labels(label_map[:, :20], radius=10), radius=10)


# --------------------------------------------------------------------------------------------
# inference wrapper
# --------------------------------------------------------------------------------------------

def test_edge_displacement_shapes_odd_sizes():
    net = IRNet("resnet18").eval()
    wrapper = EdgeDisplacement(net)
    with torch.no_grad():
        for height, width in [(70, 93), (33, 17), (64, 64)]:
            boundary, disp = wrapper(torch.randn(1, 3, height, width))
            expect = ((height - 1) // 4 + 1, (width - 1) // 4 + 1)
            assert boundary.shape == (1, *expect) and disp.shape == (2, *expect)
            assert ((boundary > 0) & (boundary < 1)).all()
    assert wrapper.padded_size(70, 93) == (512, 512)
    assert wrapper.padded_size(70, 600) == (512, 608)
    assert EdgeDisplacement(net, pad_to=0).padded_size(70, 93) == (80, 96)
    with pytest.raises(ValueError, match="one image"):
        wrapper(torch.randn(2, 3, 32, 32))


def test_edge_displacement_matches_manual_computation():
    net = IRNet("resnet18")
    net.mean_shift.running_mean.copy_(torch.tensor([0.25, -0.5]))
    net.train()  # the wrapper subtracts the mean shift whatever the mode
    image = torch.randn(1, 3, 70, 93)
    with torch.no_grad():
        boundary, disp = EdgeDisplacement(net, pad_to=0)(image)
        pair = F.pad(torch.cat([image, image.flip(-1)]), [0, 96 - 93, 0, 80 - 70])
        edge, raw = net(pair, subtract_mean_shift=False)
        edge, raw = edge[..., :18, :24], raw[..., :18, :24]
        expect_b = torch.sigmoid((edge[0] + edge[1].flip(-1)) / 2)
        expect_d = raw[0] - torch.tensor([0.25, -0.5]).view(2, 1, 1)
        ref_b, ref_d = EdgeDisplacement(net)(image)  # padded to 512 x 512
    torch.testing.assert_close(boundary, expect_b)
    torch.testing.assert_close(disp, expect_d)
    assert ref_b.shape == boundary.shape and ref_d.shape == disp.shape


class _FakeIRNet(nn.Module):
    """Edge logits = a column ramp, displacement = 4x4 average of the image (flip-equivariant)."""

    stride = 16

    def __init__(self):
        super().__init__()
        self.mean_shift = MeanShift(2)
        self.mean_shift.running_mean.copy_(torch.tensor([1.0, 2.0]))
        self.calls = []

    def forward(self, x, subtract_mean_shift=None):
        self.calls.append(tuple(x.shape))
        pooled = F.avg_pool2d(x, 4)
        ramp = torch.arange(pooled.shape[-1], dtype=x.dtype).expand(x.shape[0], 1, *pooled.shape[-2:])
        return ramp + pooled[:, :1], pooled[:, 1:3]


def test_edge_displacement_flip_averaging():
    fake = _FakeIRNet()
    image = torch.randn(1, 3, 37, 48)  # width a multiple of 4: pooling commutes with the flip
    boundary, disp = EdgeDisplacement(fake, pad_to=0)(image)
    assert fake.calls == [(2, 3, 48, 48)]
    pooled = F.avg_pool2d(F.pad(image, [0, 0, 0, 11]), 4)[..., :10, :12]
    # image pass: ramp(j) + p(j); flipped pass, flipped back: ramp(11 - j) + p(j)
    torch.testing.assert_close(boundary, torch.sigmoid(5.5 + pooled[0, :1]))
    torch.testing.assert_close(disp, pooled[0, 1:3] - torch.tensor([1.0, 2.0]).view(2, 1, 1))
