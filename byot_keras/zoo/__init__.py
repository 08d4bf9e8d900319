"""Multi-exit model zoo: builders for every family, reachable by name.

Example:
    >>> from byot_keras import zoo
    >>> "resnet50_byot" in zoo.list_models("resnet*")
    True
    >>> model = zoo.create_model("resnet18_byot", num_classes=10, width_multiplier=0.125)
"""

from byot_keras.zoo.alexnet import (
    alexnet,
    alexnet_byot,
)
from byot_keras.zoo.densenet import (
    densenet121,
    densenet121_byot,
    densenet_bc100_k12,
    densenet_bc100_k12_byot,
    densenet_byot,
)
from byot_keras.zoo.registry import create_model, get_model_builder, list_models, register_model
from byot_keras.zoo.resnet import (
    resnet18,
    resnet18_byot,
    resnet34,
    resnet34_byot,
    resnet50,
    resnet50_byot,
    resnet101,
    resnet101_byot,
    resnet152,
    resnet152_byot,
)
from byot_keras.zoo.resnext import (
    resnext29_8x64d,
    resnext29_8x64d_byot,
    resnext29_16x64d,
    resnext29_16x64d_byot,
    resnext50_32x4d,
    resnext50_32x4d_byot,
)
from byot_keras.zoo.vgg import (
    vgg11,
    vgg11_byot,
    vgg13,
    vgg13_byot,
    vgg16,
    vgg16_byot,
    vgg19,
    vgg19_byot,
)
from byot_keras.zoo.wide_resnet import (
    wide_resnet_byot,
    wrn16_4,
    wrn16_4_byot,
    wrn28_10,
    wrn28_10_byot,
    wrn44_8,
    wrn44_8_byot,
)

__all__ = [
    "create_model",
    "get_model_builder",
    "list_models",
    "register_model",
    "alexnet",
    "alexnet_byot",
    "densenet121",
    "densenet121_byot",
    "densenet_bc100_k12",
    "densenet_bc100_k12_byot",
    "densenet_byot",
    "resnet18",
    "resnet18_byot",
    "resnet34",
    "resnet34_byot",
    "resnet50",
    "resnet50_byot",
    "resnet101",
    "resnet101_byot",
    "resnet152",
    "resnet152_byot",
    "resnext29_8x64d",
    "resnext29_8x64d_byot",
    "resnext29_16x64d",
    "resnext29_16x64d_byot",
    "resnext50_32x4d",
    "resnext50_32x4d_byot",
    "vgg11",
    "vgg11_byot",
    "vgg13",
    "vgg13_byot",
    "vgg16",
    "vgg16_byot",
    "vgg19",
    "vgg19_byot",
    "wide_resnet_byot",
    "wrn16_4",
    "wrn16_4_byot",
    "wrn28_10",
    "wrn28_10_byot",
    "wrn44_8",
    "wrn44_8_byot",
]
