"""Perceptual reconstruction loss: L1 distance between VGG-19 features of two images.

The loss of Schmidtke et al. 2021 (unsupervised 2D pose through transforming shape templates; code
``lschmidtke/shape_templates``, ``src/core/model.py``): ``vgg19(pretrained=True).features[:14]`` (conv1_1 up to
the ReLU after conv3_2), ImageNet-normalised inputs, ``l1(vgg(x), vgg(y))``. The ImageNet weights cannot be
downloaded on an offline machine: pass a local file, or ``"random"`` for randomly initialised (frozen) features,
a known partial substitute (random conv features keep local structure but not ImageNet's semantics).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from .backbones import IMAGENET_MEAN, IMAGENET_STD


def load_vgg19_features(weights: str, layers: int = 14, option: str = "perceptual_weights") -> nn.Sequential:
    """The first ``layers`` modules of VGG-19's ``features``, frozen, in eval mode.

    ``weights``: a torchvision VGG-19 state dict file (keys ``features.N.weight`` as saved from
    ``torchvision.models.vgg19``, or ``N.weight`` of ``.features`` alone; only the first ``layers`` are read) or
    ``"random"`` (seeded by the caller's RNG). A missing file or a file without VGG-19 feature weights raises an error naming ``option``.
    """
    # VGG-19's feature layers alone (building the whole model would initialise its 120M-parameter classifier)
    vgg = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["E"])
    for m in vgg.modules():  # torchvision's VGG initialisation
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    if not 1 <= layers <= len(vgg):
        raise ValueError(f"{option}: layers must be in 1..{len(vgg)}, got {layers}")
    features = vgg[:layers]
    if weights != "random":
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(
                f"{option}: VGG-19 weights file {str(path)!r} not found. Save torchvision's ImageNet VGG-19 "
                f"(torchvision.models.vgg19(weights='IMAGENET1K_V1').state_dict()) there on a machine with internet "
                f"access, or set {option}: random for randomly initialised features (a partial substitute)"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k.removeprefix("features."): v for k, v in state.items()}
        state = {k: v for k, v in state.items() if k.split(".")[0].isdigit() and int(k.split(".")[0]) < layers}
        missing, _ = features.load_state_dict(state, strict=False)
        if missing:
            raise ValueError(f"{option}: {str(path)!r} is not a VGG-19 state dict (missing {missing[:4]})")
    features.eval()
    for p in features.parameters():
        p.requires_grad_(False)
    return features


class PerceptualLoss(nn.Module):
    """L1 between VGG-19 features of ``x`` and ``y`` (B, 3, H, W) in [0, 1]; ``reduction`` ``mean`` (over all
    feature values, as the 2D predecessor) or ``sum`` (per image, then the batch mean)."""

    def __init__(self, weights: str, layers: int = 14, option: str = "perceptual_weights"):
        super().__init__()
        self.features = load_vgg19_features(weights, layers, option)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> PerceptualLoss:  # the features stay frozen in eval mode
        super().train(mode)
        self.features.eval()
        return self

    def forward(self, x: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        both = (torch.cat([x, y]).float() - self.mean) / self.std
        fx, fy = self.features(both).chunk(2)
        err = (fx - fy).abs()
        return err.flatten(1).sum(1).mean() if reduction == "sum" else err.mean()
