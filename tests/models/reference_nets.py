"""The reference implementation's networks, transcribed module for module (nothing imported).

Module structure, registration order and forward passes of the reference's ``net/resnet50.py``
(FixedBatchNorm ResNet-50, strides (2, 2, 2, 1)), ``net/resnet50_cam.py`` (``Net``) and
``net/resnet50_irn.py`` (``Net`` with its ``MeanShift``, ``EdgeDisplacement.forward``), so that
``state_dict()`` has exactly the reference's keys (aliases included) and the outputs are the
reference's. Random initialisation (the reference loads ImageNet weights here).
"""
import torch
import torch.nn.functional as F
from torch import nn


class FixedBatchNorm(nn.BatchNorm2d):
    """BatchNorm that always normalises with its running statistics."""

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, eps=self.eps)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, dilation=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = FixedBatchNorm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, bias=False, dilation=dilation)
        self.bn2 = FixedBatchNorm(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = FixedBatchNorm(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class ResNet50(nn.Module):
    def __init__(self, strides=(2, 2, 2, 1)):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=strides[0], padding=3, bias=False)
        self.bn1 = FixedBatchNorm(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, 3, stride=1)
        self.layer2 = self._make_layer(128, 4, stride=strides[1])
        self.layer3 = self._make_layer(256, 6, stride=strides[2])
        self.layer4 = self._make_layer(512, 3, stride=strides[3])

    def _make_layer(self, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False),
                                       FixedBatchNorm(planes * 4))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)


class CAMNet(nn.Module):
    """``resnet50_cam.Net``: stage1 = conv1, bn1, relu, maxpool, layer1; stage2-4 = layer2-4."""

    def __init__(self):
        super().__init__()
        self.resnet50 = ResNet50(strides=(2, 2, 2, 1))
        r = self.resnet50
        self.stage1 = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1)
        self.stage2 = nn.Sequential(r.layer2)
        self.stage3 = nn.Sequential(r.layer3)
        self.stage4 = nn.Sequential(r.layer4)
        self.classifier = nn.Conv2d(2048, 20, 1, bias=False)
        self.backbone = nn.ModuleList([self.stage1, self.stage2, self.stage3, self.stage4])
        self.newly_added = nn.ModuleList([self.classifier])

    def forward(self, x):
        x = self.stage2(self.stage1(x)).detach()
        x = self.stage4(self.stage3(x))
        x = torch.mean(x.view(x.size(0), x.size(1), -1), -1).view(x.size(0), x.size(1), 1, 1)  # gap2d
        return self.classifier(x).view(-1, 20)

    def train(self, mode=True):
        # the reference's override: freezes conv1 and bn1, never changes the modules' mode
        for p in self.resnet50.conv1.parameters():
            p.requires_grad = False
        for p in self.resnet50.bn1.parameters():
            p.requires_grad = False
        return self

    def trainable_parameters(self):
        return list(self.backbone.parameters()), list(self.newly_added.parameters())

    def cam(self, x):
        """``resnet50_cam.CAM.forward`` on the pair [image, flipped image]."""
        x = self.stage4(self.stage3(self.stage2(self.stage1(x))))
        x = F.relu(F.conv2d(x, self.classifier.weight))
        return x[0] + x[1].flip(-1)


def _block(cin, cout, groups, up=None):
    layers = [nn.Conv2d(cin, cout, 1, bias=False), nn.GroupNorm(groups, cout)]
    if up:
        layers.append(nn.Upsample(scale_factor=up, mode="bilinear", align_corners=False))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class IRNet(nn.Module):
    """``resnet50_irn.Net`` (the mean shift registered first, then reused as fc_dp7's last module)."""

    class MeanShift(nn.Module):
        def __init__(self, num_features):
            super().__init__()
            self.register_buffer("running_mean", torch.zeros(num_features))

        def forward(self, x):
            return x if self.training else x - self.running_mean.view(1, 2, 1, 1)

    def __init__(self):
        super().__init__()
        self.resnet50 = ResNet50(strides=[2, 2, 2, 1])
        r = self.resnet50
        self.stage1 = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool)
        self.stage2 = nn.Sequential(r.layer1)
        self.stage3 = nn.Sequential(r.layer2)
        self.stage4 = nn.Sequential(r.layer3)
        self.stage5 = nn.Sequential(r.layer4)
        self.mean_shift = IRNet.MeanShift(2)
        self.fc_edge1 = _block(64, 32, 4)
        self.fc_edge2 = _block(256, 32, 4)
        self.fc_edge3 = _block(512, 32, 4, up=2)
        self.fc_edge4 = _block(1024, 32, 4, up=4)
        self.fc_edge5 = _block(2048, 32, 4, up=4)
        self.fc_edge6 = nn.Conv2d(160, 1, 1, bias=True)
        self.fc_dp1 = _block(64, 64, 8)
        self.fc_dp2 = _block(256, 128, 16)
        self.fc_dp3 = _block(512, 256, 16)
        self.fc_dp4 = _block(1024, 256, 16, up=2)
        self.fc_dp5 = _block(2048, 256, 16, up=2)
        self.fc_dp6 = _block(768, 256, 16, up=2)
        self.fc_dp7 = nn.Sequential(nn.Conv2d(448, 256, 1, bias=False), nn.GroupNorm(16, 256), nn.ReLU(inplace=True),
                                    nn.Conv2d(256, 2, 1, bias=False), self.mean_shift)
        self.backbone = nn.ModuleList([self.stage1, self.stage2, self.stage3, self.stage4, self.stage5])
        self.edge_layers = nn.ModuleList([self.fc_edge1, self.fc_edge2, self.fc_edge3, self.fc_edge4,
                                          self.fc_edge5, self.fc_edge6])
        self.dp_layers = nn.ModuleList([self.fc_dp1, self.fc_dp2, self.fc_dp3, self.fc_dp4, self.fc_dp5,
                                        self.fc_dp6, self.fc_dp7])

    def forward(self, x):
        x1 = self.stage1(x).detach()
        x2 = self.stage2(x1).detach()
        x3 = self.stage3(x2).detach()
        x4 = self.stage4(x3).detach()
        x5 = self.stage5(x4).detach()
        edge1 = self.fc_edge1(x1)
        edge2 = self.fc_edge2(x2)
        edge3 = self.fc_edge3(x3)[..., :edge2.size(2), :edge2.size(3)]
        edge4 = self.fc_edge4(x4)[..., :edge2.size(2), :edge2.size(3)]
        edge5 = self.fc_edge5(x5)[..., :edge2.size(2), :edge2.size(3)]
        edge_out = self.fc_edge6(torch.cat([edge1, edge2, edge3, edge4, edge5], dim=1))
        dp1 = self.fc_dp1(x1)
        dp2 = self.fc_dp2(x2)
        dp3 = self.fc_dp3(x3)
        dp4 = self.fc_dp4(x4)[..., :dp3.size(2), :dp3.size(3)]
        dp5 = self.fc_dp5(x5)[..., :dp3.size(2), :dp3.size(3)]
        dp_up3 = self.fc_dp6(torch.cat([dp3, dp4, dp5], dim=1))[..., :dp2.size(2), :dp2.size(3)]
        dp_out = self.fc_dp7(torch.cat([dp1, dp2, dp_up3], dim=1))
        return edge_out, dp_out

    def train(self, mode=True):
        super().train(mode)
        self.backbone.eval()
        return self


def edge_displacement(net, pair, crop_size=512, stride=4):
    """``resnet50_irn.EdgeDisplacement.forward`` of ``net`` (eval mode) on [image, flipped image]."""
    feat_size = (pair.size(2) - 1) // stride + 1, (pair.size(3) - 1) // stride + 1
    x = F.pad(pair, [0, crop_size - pair.size(3), 0, crop_size - pair.size(2)])
    edge_out, dp_out = net(x)
    edge_out = edge_out[..., :feat_size[0], :feat_size[1]]
    dp_out = dp_out[..., :feat_size[0], :feat_size[1]]
    return torch.sigmoid(edge_out[0] / 2 + edge_out[1].flip(-1) / 2), dp_out[0]


def randomize(net, seed=0):
    """Non-trivial BatchNorm statistics and GroupNorm / BatchNorm affine parameters (in place)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 0.2 - 0.1)
    return net
