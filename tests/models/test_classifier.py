"""The ResNet classifier wrapper: forward, configs and pretrained folders."""

from __future__ import annotations

import pytest
import torch
from transformers import ResNetConfig, ResNetForImageClassification

from crossforget.core.errors import CrossforgetError
from crossforget.models.classifier import build_classifier, classifier_config


def test_forward_is_the_head_on_the_penultimate_features():
    model, pre = build_classifier(classifier_config("resnet-small", 7, 32))
    images = torch.randn(3, 3, 32, 32)
    features = model.features(images)
    assert features.shape == (3, 128) and model.feature_dim == 128
    head = model.net.classifier[1]
    assert torch.allclose(model(images), features @ head.weight.T + head.bias, atol=1e-6)
    assert model(images).shape == (3, 7)
    assert pre.images(torch.zeros(2, 32, 32, 3, dtype=torch.uint8)).shape == (2, 3, 32, 32)


def test_resnet50_is_the_default_config():
    config = classifier_config("resnet-50", 100)
    assert config["resnet"] == {} and config["image_size"] == 224
    assert ResNetConfig(**config["resnet"]).hidden_sizes == [256, 512, 1024, 2048]


def test_bad_configs_are_errors():
    with pytest.raises(CrossforgetError, match="resnet-small"):
        classifier_config("vgg", 10)
    with pytest.raises(CrossforgetError, match="2 classes"):
        classifier_config("resnet-small", 1)


def test_pretrained_weights_come_from_a_local_folder(tmp_path):
    source = ResNetForImageClassification(
        ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=5)
    )
    source.save_pretrained(tmp_path / "resnet")
    config = classifier_config("resnet-small", 3, 32, pretrained=tmp_path / "resnet")
    assert config["resnet"]["hidden_sizes"] == [8, 16]
    model, _ = build_classifier(config)
    stem = "resnet.embedder.embedder.convolution.weight"
    assert torch.equal(model.net.state_dict()[stem], source.state_dict()[stem])
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)  # a new 3-class head
    bare, _ = build_classifier(config, load_pretrained=False)
    assert not torch.equal(bare.net.state_dict()[stem], source.state_dict()[stem])
    with pytest.raises(CrossforgetError, match="--pretrained"):
        classifier_config("resnet-50", 3, pretrained=tmp_path / "missing")
