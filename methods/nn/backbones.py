"""Image backbones shared by the image methods: torchvision ResNets behind one factory.

``make_backbone("resnet18" | "resnet34" | "resnet50", pretrained=None | path, frozen_bn=False,
channels_last=False)`` returns a :class:`ResNetBackbone` that normalises [0, 1] RGB with the ImageNet
statistics and returns features at strides 4, 8, 16 and 32 (``return_strides``), so decoders can
take the resolutions they need.

Nothing downloads. ImageNet weights are torchvision's published state dicts, which a user fetches
once on a machine with internet, e.g. ``resnet18-f37072fd.pth``, ``resnet34-b627a593.pth`` and
``resnet50-0676ba61.pth`` from ``https://download.pytorch.org/models/`` (the files
``torchvision.models.ResNet18_Weights.IMAGENET1K_V1`` etc. point to; on a machine with internet,
``torch.hub.get_dir()`` shows where torchvision already cached them), and passes the path as
``pretrained``. The classifier (``fc``) is dropped; any other missing or unexpected key is an error.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

#: name -> (torchvision constructor, channels at strides 4, 8, 16, 32)
RESNETS = {
    "resnet18": (torchvision.models.resnet18, (64, 128, 256, 512)),
    "resnet34": (torchvision.models.resnet34, (64, 128, 256, 512)),
    "resnet50": (torchvision.models.resnet50, (256, 512, 1024, 2048)),
}
STRIDES = (4, 8, 16, 32)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BackboneError(ValueError):
    """A backbone option that cannot work; the message names the option and what to do."""


class ResNetBackbone(nn.Module):
    """A torchvision ResNet without its classifier; ``forward`` gives ``{stride: (B, C_s, H/s, W/s)}``.

    Args:
        name: ``resnet18``, ``resnet34`` or ``resnet50``.
        pretrained: path to a torchvision ImageNet state dict (see the module docstring), or None.
        frozen_bn: BatchNorm with fixed statistics and affine parameters (``FrozenBatchNorm2d``), as
            detection/pose codebases do for small batches.
        channels_last: keep weights and activations in NHWC (faster convolutions on GPUs with bf16).
        return_strides: which feature maps ``forward`` returns.
    """

    def __init__(self, name: str = "resnet18", pretrained: str | None = None, frozen_bn: bool = False,
                 channels_last: bool = False, return_strides: tuple[int, ...] = STRIDES):  # fmt: skip
        super().__init__()
        if name not in RESNETS:
            raise BackboneError(f"backbone {name!r} does not exist; choose one of {sorted(RESNETS)} "
                                "(option model.init_args.backbone)")  # fmt: skip
        bad = sorted(set(return_strides) - set(STRIDES))
        if bad or not return_strides:
            raise BackboneError(
                f"backbone return_strides {list(return_strides)} must be a non-empty subset of {STRIDES}"
            )
        build, channels = RESNETS[name]
        net = build(weights=None, norm_layer=FrozenBatchNorm2d if frozen_bn else None)
        if pretrained:
            load_pretrained(net, pretrained, name)
        self.name = name
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.stages = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.return_strides = tuple(sorted(return_strides))
        self.stage_channels = dict(zip(STRIDES, channels))
        self.channels_last = channels_last
        # only the stages up to the deepest requested stride run
        self.depth = STRIDES.index(self.return_strides[-1]) + 1
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    @property
    def out_channels(self) -> int:
        """Channels of the deepest returned feature map."""
        return self.stage_channels[self.return_strides[-1]]

    def forward(self, image: torch.Tensor) -> dict[int, torch.Tensor]:
        """(B, 3, H, W) RGB in [0, 1] -> {stride: features}."""
        x = (image - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.stem(x)
        out = {}
        for stride, stage in zip(STRIDES[: self.depth], self.stages[: self.depth]):
            x = stage(x)
            if stride in self.return_strides:
                out[stride] = x
        return out


def load_pretrained(net: nn.Module, path: str, name: str) -> None:
    """Load a torchvision ImageNet state dict into ``net`` (its ``fc`` ignored), or fail naming the file."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise BackboneError(f"pretrained weights {file} do not exist (option model.init_args.pretrained): download "
                            f"torchvision's ImageNet {name} weights (see methods/nn/backbones.py) or set it to null")  # fmt: skip
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same advice
        raise BackboneError(f"pretrained weights {file} could not be read as a torch state dict ({e})") from e
    if isinstance(state, dict) and "state_dict" in state:  # a Lightning/other checkpoint wrapping one
        state = state["state_dict"]
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = {
        k: v for k, v in net.state_dict().items() if not k.startswith("fc.") and not k.endswith("num_batches_tracked")
    }
    missing = sorted(set(own) - set(state))
    unexpected = sorted(k for k in set(state) - set(own) if not k.endswith("num_batches_tracked"))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(f"{what}: {keys[:3]}{' ...' if len(keys) > 3 else ''}"
                           for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape differs", wrong))
                           if keys)  # fmt: skip
        raise BackboneError(f"pretrained weights {file} do not fit backbone {name} ({detail}); "
                            f"use torchvision's ImageNet weights of {name} (option model.init_args.pretrained)")  # fmt: skip
    net.load_state_dict(state, strict=False)


def make_backbone(name: str = "resnet18", pretrained: str | None = None, frozen_bn: bool = False,
                  channels_last: bool = False, return_strides: tuple[int, ...] = STRIDES) -> ResNetBackbone:  # fmt: skip
    """The one factory every image method builds its backbone with (see :class:`ResNetBackbone`)."""
    return ResNetBackbone(name, pretrained, frozen_bn, channels_last, return_strides)


def check_image(image: torch.Tensor, size: tuple[int, int] | None, where: str) -> None:
    """Fail with the options to change when a batch's images are not (B, 3, H, W) at the configured size.

    ``size`` is (height, width) or None for any size; ``where`` names the method in the message.
    """
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"{where} needs images of shape (B, 3, H, W) RGB, got {tuple(image.shape)}: use a data "
                         "module that yields 3-channel 'image' batches in single mode (data.init_args.mode: single)")  # fmt: skip
    if size is not None and tuple(image.shape[-2:]) != tuple(size):
        raise ValueError(f"{where} was built for {size[1]}x{size[0]} px images but the data gives "
                         f"{image.shape[-1]}x{image.shape[-2]}: set data.init_args.image_size and "
                         "model.init_args.image_size to the same value")  # fmt: skip
