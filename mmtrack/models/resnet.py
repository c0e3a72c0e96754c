"""torchvision's ResNets (ResNet-18, ResNet-50, Wide ResNet-50-2) trained from scratch, with a `width` factor
that scales every channel count and the small-image stem for small inputs."""

from __future__ import annotations

from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

# name -> (block, layers, width_per_group), exactly as torchvision.models.resnet18 / resnet50 / wide_resnet50_2
ARCHS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2], 64),
    "resnet50": (Bottleneck, [3, 4, 6, 3], 64),
    "wide_resnet50_2": (Bottleneck, [3, 4, 6, 3], 128),
}

SMALL_IMAGE_MAX = 32  # images up to this size (CIFAR-sized) get the 3x3 / stride 1 / no max-pool stem; larger ones torchvision's 7x7 / stride 2 / max-pool stem


class ScaledResNet(ResNet):
    """torchvision's ResNet with channel counts scaled by `width` (1.0 = torchvision's) and a choice of stem."""

    def __init__(
        self,
        block,
        layers,
        num_classes: int,
        width: float = 1.0,
        width_per_group: int = 64,
        small_stem: bool = True,
        zero_init_residual: bool = False,
    ):
        nn.Module.__init__(self)
        planes = [max(1, int(round(p * width))) for p in (64, 128, 256, 512)]
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = planes[0]
        self.dilation = 1
        self.groups = 1
        self.base_width = width_per_group
        if small_stem:
            self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, planes[0], layers[0])
        self.layer2 = self._make_layer(block, planes[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, planes[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, planes[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(planes[3] * block.expansion, num_classes)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:  # as torchvision's ResNet(zero_init_residual=True)
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)
