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
]
