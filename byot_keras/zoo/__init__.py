"""Multi-exit model zoo: every network of `byot_keras.networks`, trained by a method of
`byot_keras.losses`, reachable by name (`create_model`, `list_models`) or as a function.

Example:
    >>> from byot_keras import zoo
    >>> "resnet50_byot" in zoo.list_models("resnet*")
    True
    >>> model = zoo.create_model("resnet18_byot", num_classes=10, width_multiplier=0.125)
"""

import byot_keras.networks  # noqa: F401 - registers every network
from byot_keras.zoo.pretrained import list_pretrained, register_pretrained
from byot_keras.zoo.registry import (
    create_model,
    get_model_builder,
    list_models,
    register_model,
)

# The public builders, one per registered network (each documents its keywords).
alexnet = get_model_builder("alexnet")
alexnet_byot = get_model_builder("alexnet_byot")
densenet121 = get_model_builder("densenet121")
densenet121_byot = get_model_builder("densenet121_byot")
densenet_bc100_k12 = get_model_builder("densenet_bc100_k12")
densenet_bc100_k12_byot = get_model_builder("densenet_bc100_k12_byot")
densenet_byot = get_model_builder("densenet_byot")
resnet18 = get_model_builder("resnet18")
resnet18_byot = get_model_builder("resnet18_byot")
resnet34 = get_model_builder("resnet34")
resnet34_byot = get_model_builder("resnet34_byot")
resnet50 = get_model_builder("resnet50")
resnet50_byot = get_model_builder("resnet50_byot")
resnet101 = get_model_builder("resnet101")
resnet101_byot = get_model_builder("resnet101_byot")
resnet152 = get_model_builder("resnet152")
resnet152_byot = get_model_builder("resnet152_byot")
resnext29_8x64d = get_model_builder("resnext29_8x64d")
resnext29_8x64d_byot = get_model_builder("resnext29_8x64d_byot")
resnext29_16x64d = get_model_builder("resnext29_16x64d")
resnext29_16x64d_byot = get_model_builder("resnext29_16x64d_byot")
resnext50_32x4d = get_model_builder("resnext50_32x4d")
resnext50_32x4d_byot = get_model_builder("resnext50_32x4d_byot")
vgg11 = get_model_builder("vgg11")
vgg11_byot = get_model_builder("vgg11_byot")
vgg13 = get_model_builder("vgg13")
vgg13_byot = get_model_builder("vgg13_byot")
vgg16 = get_model_builder("vgg16")
vgg16_byot = get_model_builder("vgg16_byot")
vgg19 = get_model_builder("vgg19")
vgg19_byot = get_model_builder("vgg19_byot")
wide_resnet_byot = get_model_builder("wide_resnet_byot")
wrn16_4 = get_model_builder("wrn16_4")
wrn16_4_byot = get_model_builder("wrn16_4_byot")
wrn28_10 = get_model_builder("wrn28_10")
wrn28_10_byot = get_model_builder("wrn28_10_byot")
wrn44_8 = get_model_builder("wrn44_8")
wrn44_8_byot = get_model_builder("wrn44_8_byot")

__all__ = [
    "create_model",
    "get_model_builder",
    "list_models",
    "list_pretrained",
    "register_model",
    "register_pretrained",
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
