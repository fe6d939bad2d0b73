"""Image classifiers for the classification track: transformers' ResNet, with its penultimate features.

Two architectures: ``resnet-50`` (the default ``ResNetConfig``, the paper's backbone; random weights
unless ``pretrained`` names a local folder written by ``save_pretrained``) and ``resnet-small`` (tiny
widths, one basic block per stage) so that the whole of Table 1 trains on a CPU in minutes. Nothing is
ever downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import ResNetConfig, ResNetForImageClassification

from crossforget.core.errors import CrossforgetError

ARCHITECTURES: dict[str, dict] = {
    "resnet-small": {
        "embedding_size": 32,
        "hidden_sizes": [32, 64, 128],
        "depths": [1, 1, 1],
        "layer_type": "basic",
    },
    "resnet-50": {},  # ResNetConfig() defaults are ResNet-50
}
DEFAULT_IMAGE_SIZE = {"resnet-small": 32, "resnet-50": 224}
# Pixel statistics: ImageNet's for ResNet-50 (what pretrained weights expect), flat ones otherwise.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FLAT_MEAN, FLAT_STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


@dataclass
class ImagePreprocessor:
    """uint8 (B,H,W,3) pixels -> normalised float (B,3,H,W); stored in checkpoints via ``to_config``."""

    image_size: int
    mean: tuple[float, float, float] = FLAT_MEAN
    std: tuple[float, float, float] = FLAT_STD

    def images(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
        return (x - torch.tensor(self.mean).view(1, 3, 1, 1)) / torch.tensor(self.std).view(1, 3, 1, 1)

    def to_config(self) -> dict:
        return {"image_size": self.image_size, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_config(cls, config: dict) -> ImagePreprocessor:
        return cls(int(config["image_size"]), tuple(config["mean"]), tuple(config["std"]))


class ImageClassifier(nn.Module):
    """``forward(images) -> logits``; ``features(images)`` gives the pooled penultimate features.

    The penultimate features serve PPP's prototypes (class means), so they must be exactly what the
    final linear layer sees.
    """

    def __init__(self, net: ResNetForImageClassification) -> None:
        super().__init__()
        self.net = net
        self.num_classes = int(net.config.num_labels)
        self.feature_dim = int(net.config.hidden_sizes[-1])

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.resnet(images, return_dict=True).pooler_output.flatten(1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.classifier(self.features(images))


def classifier_config(
    architecture: str, num_classes: int, image_size: int | None = None, pretrained: str | Path | None = None
) -> dict:
    """The model part of a checkpoint config (data, not code, so a checkpoint rebuilds its model)."""
    if architecture not in ARCHITECTURES:
        raise CrossforgetError(
            f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}"
        )
    if num_classes < 2:
        raise CrossforgetError(f"a classifier needs at least 2 classes, got {num_classes}")
    size = int(image_size or DEFAULT_IMAGE_SIZE[architecture])
    if size < 16:
        raise CrossforgetError(f"image size {size} is too small for a ResNet; use at least 16 px")
    imagenet = architecture == "resnet-50"
    resnet = _folder_architecture(Path(pretrained)) if pretrained else dict(ARCHITECTURES[architecture])
    return {
        "architecture": architecture,
        "num_classes": int(num_classes),
        "image_size": size,
        "resnet": resnet,
        "pretrained": str(pretrained) if pretrained else None,
        "mean": list(IMAGENET_MEAN if imagenet else FLAT_MEAN),
        "std": list(IMAGENET_STD if imagenet else FLAT_STD),
    }


def build_classifier(config: dict, load_pretrained: bool = True) -> tuple[ImageClassifier, ImagePreprocessor]:
    """A classifier from its config: random weights, or the local pretrained folder when it names one.

    ``load_pretrained=False`` builds the bare architecture (a checkpoint's own weights follow).
    """
    preprocessor = ImagePreprocessor(int(config["image_size"]), tuple(config["mean"]), tuple(config["std"]))
    if load_pretrained and config.get("pretrained"):
        net = _from_local_folder(Path(config["pretrained"]), int(config["num_classes"]))
    else:
        resnet = ResNetConfig(**config["resnet"], num_labels=int(config["num_classes"]))
        net = ResNetForImageClassification(resnet)
    model = ImageClassifier(net)
    model.eval()
    return model, preprocessor


_ARCHITECTURE_FIELDS = (
    "embedding_size",
    "hidden_sizes",
    "depths",
    "layer_type",
    "hidden_act",
    "downsample_in_first_stage",
    "downsample_in_bottleneck",
)


def _check_folder(folder: Path) -> None:
    if not (folder / "config.json").is_file():
        raise CrossforgetError(
            f"no pretrained ResNet at {folder} (config.json missing); point --pretrained at a folder "
            "written by ResNetForImageClassification.save_pretrained (e.g. a local microsoft/resnet-50)"
        )


def _folder_architecture(folder: Path) -> dict:
    """The layer layout of a pretrained folder, so a checkpoint rebuilds the same network without it."""
    _check_folder(folder)
    try:
        config = ResNetConfig.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise CrossforgetError(f"cannot read the ResNet config in {folder}: {exc}") from exc
    return {name: getattr(config, name) for name in _ARCHITECTURE_FIELDS}


def _from_local_folder(folder: Path, num_classes: int) -> ResNetForImageClassification:
    """Pretrained ResNet weights from a local folder; the classification head is re-initialised."""
    _check_folder(folder)
    try:
        return ResNetForImageClassification.from_pretrained(
            str(folder), num_labels=num_classes, ignore_mismatched_sizes=True, local_files_only=True
        )
    except (OSError, ValueError) as exc:
        raise CrossforgetError(f"cannot load the pretrained ResNet in {folder}: {exc}") from exc


def head_parameter_names(model: ImageClassifier) -> list[str]:
    """State-dict names of the classification head (what a pretrained model learned from scratch)."""
    return [name for name in model.state_dict() if name.startswith("net.classifier.")]
