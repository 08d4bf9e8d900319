"""The zoo's one registry (timm-style): every model by name, ready for `fit`.

A public builder joins the two halves of the package: a network from
`byot_keras.networks` (the architecture and its structure) and a training method from
`byot_keras.losses` (the method says what network it needs, `Objective.network_options`:
MSD's branch-augmentation heads, the plain network for `ce`, ONE's branches), wrapped in
`byot_keras.training.SelfDistillationModel`, which records how it was built. `weights=`
then loads pretrained weights (`byot_keras.zoo.pretrained`).
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable

import keras

from byot_keras.networks import registry as networks
from byot_keras.networks.common import check_builder_options
from byot_keras.options import UnknownOptionError

# Set by the methods (`Objective.network_options`), not by users.
_METHOD_OPTIONS = ("default_head", "branches")
_BRANCH_FAMILIES = "resnet18_byot ... resnet152_byot, resnext50_32x4d_byot"

_MODELS: dict[str, Callable[..., keras.Model]] = {}


def builder_record(name: str, args: tuple, keywords: dict, network) -> dict:
    """How a model was built, as JSON-ready data: the registry name, its arguments and
    the input and class count the network got."""

    def plain(value):
        if isinstance(value, tuple | list | range):
            return [plain(v) for v in value]
        if isinstance(value, set | frozenset):
            return sorted(plain(v) for v in value)
        if hasattr(value, "item"):  # NumPy scalars
            return value.item()
        return value

    record = {"name": name, "args": plain(args), "kwargs": {k: plain(v) for k, v in
                                                            sorted(keywords.items())}}
    record["num_classes"] = int(network.output["exit_1"].shape[-1])
    record["input_shape"] = [int(d) for d in network.inputs[0].shape[1:]]
    return record


def public_builder(network: networks.NetworkBuilder) -> Callable[..., keras.Model]:
    """The zoo builder of a registered network: architecture keywords go to the network,
    `method=` / `objective=` and the method's options to the training objective,
    `weights=` (with `reset_classifiers=`) to `byot_keras.zoo.pretrained`."""
    known = network.options - set(_METHOD_OPTIONS)

    def builder(*args, method: str | None = None, objective=None, weights=None,
                reset_classifiers: bool = False, **kwargs) -> keras.Model:
        from byot_keras.training import SelfDistillationModel, resolve_objective

        architecture = {k: v for k, v in kwargs.items() if k in known}
        options = {k: v for k, v in kwargs.items() if k not in known}
        check_builder_options(architecture, network.name)
        try:
            resolved = resolve_objective(objective, method, options)
        except UnknownOptionError as error:
            raise ValueError(f"{error} (Architecture options of {network.name}: "
                             f"{', '.join(sorted(known))}.)") from None
        needs = resolved.network_options()
        if "branches" in needs and "branches" not in network.options:
            raise ValueError(
                f"method '{resolved.method}' needs copies of the network's last stage, which "
                f"only the ResNet family builds ({_BRANCH_FAMILIES}); {network.name} does "
                "not.")
        keywords = {**{k: v for k, v in needs.items() if k not in architecture},
                    **architecture}
        built = network(*args, **keywords)
        model = SelfDistillationModel(
            built.network, objective=resolved, name=built.network.name.removesuffix("_network"),
            exit_structure=[info.to_dict() for info in built.exits],
            builder=builder_record(network.name, args, keywords, built.network))
        if weights is not None:
            from byot_keras.zoo.pretrained import load_pretrained

            load_pretrained(model, weights, reset_classifiers=reset_classifiers)
        elif reset_classifiers:
            raise ValueError("reset_classifiers=True applies to weights= (it re-initialises "
                             "the classifiers of loaded weights); no weights were given.")
        return model

    builder.__name__ = builder.__qualname__ = network.name
    builder.__doc__ = network.documentation
    builder.__module__ = "byot_keras.zoo"
    builder.network_builder = network
    return builder


def register_model(fn: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
    """Decorator: registers your own builder `fn` (returning a ready multi-exit model)
    under its name, beside the zoo's; returns `fn`."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"A model named '{fn.__name__}' is already registered.")
    _MODELS[fn.__name__] = fn
    return fn


def _register_networks() -> None:
    for name in networks.list_networks():
        if name not in _MODELS:
            _MODELS[name] = public_builder(networks.get_network_builder(name))


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the registered models that match a shell-style `pattern`.

    Example:
        >>> from byot_keras import zoo
        >>> zoo.list_models("resnet1*_byot")
        ['resnet101_byot', 'resnet152_byot', 'resnet18_byot']
    """
    _register_networks()
    return sorted(name for name in _MODELS if fnmatch.fnmatchcase(name, pattern))


def get_model_builder(name: str) -> Callable[..., keras.Model]:
    """The builder registered as `name`; unknown names raise with close suggestions."""
    _register_networks()
    if not isinstance(name, str):
        raise ValueError(f"The model name must be a string, one of zoo.list_models() (e.g. "
                         f"'resnet18_byot'); got {name!r}.")
    try:
        return _MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name, _MODELS, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(
            f"Unknown model name '{name}'.{hint} "
            f"Valid names: {', '.join(list_models())} (see zoo.list_models())."
        ) from None


def create_model(name: str, *args, **kwargs) -> keras.Model:
    """Builds the registered model `name` with the builder's arguments.

    Example:
        >>> from byot_keras import zoo
        >>> model = zoo.create_model("resnet18_byot", num_classes=10, width_multiplier=0.125)
        >>> model.exit_names
        ['exit_1', 'exit_2', 'exit_3', 'exit_4']
    """
    return get_model_builder(name)(*args, **kwargs)
