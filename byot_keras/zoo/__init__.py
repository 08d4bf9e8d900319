"""Multi-exit model zoo: builders for every family, reachable by name.

Example:
    >>> from byot_keras import zoo
    >>> "resnet50_byot" in zoo.list_models("resnet*")
    True
    >>> model = zoo.create_model("resnet18_byot", num_classes=10, width_multiplier=0.125)
"""

from byot_keras.zoo.registry import create_model, get_model_builder, list_models, register_model
from byot_keras.zoo.resnet import (
    resnet18_byot,
    resnet34_byot,
    resnet50_byot,
    resnet101_byot,
    resnet152_byot,
)
from byot_keras.zoo.resnext import (
    resnext29_8x64d_byot,
    resnext29_16x64d_byot,
    resnext50_32x4d_byot,
)
from byot_keras.zoo.vgg import vgg11_byot, vgg13_byot, vgg16_byot, vgg19_byot
from byot_keras.zoo.wide_resnet import (
    wide_resnet_byot,
    wrn16_4_byot,
    wrn28_10_byot,
    wrn44_8_byot,
)

__all__ = [
    "create_model",
    "get_model_builder",
    "list_models",
    "register_model",
    "resnet18_byot",
    "resnet34_byot",
    "resnet50_byot",
    "resnet101_byot",
    "resnet152_byot",
    "resnext29_8x64d_byot",
    "resnext29_16x64d_byot",
    "resnext50_32x4d_byot",
    "vgg11_byot",
    "vgg13_byot",
    "vgg16_byot",
    "vgg19_byot",
    "wide_resnet_byot",
    "wrn16_4_byot",
    "wrn28_10_byot",
    "wrn44_8_byot",
]
