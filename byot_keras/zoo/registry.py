"""One registry for every model builder in the zoo (timm-style).

Builders register themselves with :func:`register_model`; users reach them by name
through :func:`create_model` or list them with :func:`list_models`.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import inspect
from collections.abc import Callable, Sequence

import keras

from byot_keras.losses.core import UnknownOptionError
from byot_keras.zoo.common import check_builder_options

_MODELS: dict[str, Callable[..., keras.Model]] = {}


def _architecture_options(fn: Callable) -> set[str]:
    """The keyword arguments `fn` understands, following the builders it wraps or forwards
    to (`__wrapped__`, `family_builder`); a family builder's positional parameters are
    fixed by the variant, so only its keyword-only ones count."""
    names: set[str] = set()
    seen: set[int] = set()
    pending = [(fn, False)]
    while pending:
        target, is_family = pending.pop()
        while target is not None and id(target) not in seen:
            seen.add(id(target))
            kinds = ((inspect.Parameter.KEYWORD_ONLY,) if is_family else
                     (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY))
            parameters = inspect.signature(target, follow_wrapped=False).parameters
            names |= {n for n, p in parameters.items() if p.kind in kinds}
            if getattr(target, "family_builder", None) is not None:
                pending.append((target.family_builder, True))
            target = getattr(target, "__wrapped__", None)
    return names - {"method"}


def with_method(fn: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
    """Lets a builder take `method=` and the method's options as keyword arguments.

    Keywords the builder knows are architecture options; the rest are options of the
    method (see byot_keras.losses); a keyword that is neither raises and lists both.
    """
    known = _architecture_options(fn) - {"objective"}

    @functools.wraps(fn)
    def builder(*args, method: str | None = None, objective=None, **kwargs):
        from byot_keras.training import resolve_objective

        architecture = {k: v for k, v in kwargs.items() if k in known}
        options = {k: v for k, v in kwargs.items() if k not in known}
        check_builder_options(architecture, fn.__name__)
        try:
            resolved = resolve_objective(objective, method, options)
        except UnknownOptionError as error:
            raise ValueError(
                f"{error} (Architecture options of {fn.__name__}: {', '.join(sorted(known))}.)"
            ) from None
        return fn(*args, objective=resolved, **architecture)

    return builder


def register_model(fn: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
    """Decorator: registers `fn` under its own name (with `method=` support, see
    :func:`with_method`) and returns the registered builder."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"A model named '{name}' is already registered.")
    builder = with_method(fn)
    _MODELS[name] = builder
    return builder


def register_variant(fn_name: str, build: Callable[..., keras.Model], doc: str,
                     *fixed_args) -> Callable[..., keras.Model]:
    """Registers `fn_name`: a keyword-only builder that calls `build(*fixed_args, ...)`
    with the shared keyword arguments (`num_classes`, `input_shape`, `weights`, `name`
    and the family's options), e.g. resnet50_byot = build_resnet(bottleneck, (3,4,6,3))."""

    def builder(*, num_classes: int = 100, input_shape: tuple | None = None,
                weights: str | None = None, name: str = fn_name, **kwargs) -> keras.Model:
        return build(*fixed_args, name=name, num_classes=num_classes,
                     input_shape=input_shape, weights=weights, **kwargs)

    builder.__name__ = builder.__qualname__ = fn_name
    builder.__doc__ = doc
    builder.__module__ = build.__module__
    builder.family_builder = build
    return register_model(builder)


def register_single_exit_variant(fn_name: str, build: Callable[..., keras.Model], doc: str,
                                 *fixed_args) -> Callable[..., keras.Model]:
    """Registers `fn_name`: the network of `build(*fixed_args, ...)` with no shallow exit,
    so a model with the one output `exit_1`, the plain architecture.

    A non-empty `exits` is refused, pointing to the multi-exit `<fn_name>_byot` builder.
    """

    @functools.wraps(build)  # keeps build's signature, which lists the accepted options
    def build_single_exit(*args, exits: Sequence[int] | None = None, **kwargs):
        if exits is not None and (not isinstance(exits, (list, tuple)) or len(exits) > 0):
            raise ValueError(
                f"{fn_name} is the single-exit network and takes no shallow exits (got "
                f"exits={exits!r}); use {fn_name}_byot(exits=...) for a multi-exit model."
            )
        return build(*args, exits=(), **kwargs)

    return register_variant(fn_name, build_single_exit, doc, *fixed_args)


def register_plain_variant(multi_exit: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
    """Registers the single-exit form of a registered `<name>_byot` builder as `<name>`:
    the plain architecture (one output, `exit_1`), e.g. `resnet18` beside `resnet18_byot`."""
    multi_name = multi_exit.__name__
    if not multi_name.endswith("_byot"):
        raise ValueError(f"'{multi_name}' is not a multi-exit (_byot) builder.")
    name = multi_name[: -len("_byot")]
    doc = (f"Builds the plain single-exit network of `{multi_name}` (one output, `exit_1`; "
           f"the baseline).\n\n    Takes the keywords of `{multi_name}` except `exits`.\n\n"
           f"    Example:\n        >>> from byot_keras import zoo\n"
           f"        >>> zoo.create_model('{name}', num_classes=10).exit_names\n"
           f"        ['exit_1']\n")
    return register_single_exit_variant(name, multi_exit, doc)


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the registered models that match a shell-style `pattern`.

    Example:
        >>> from byot_keras import zoo
        >>> zoo.list_models("resnet1*")
        ['resnet101_byot', 'resnet152_byot', 'resnet18_byot']
    """
    return sorted(name for name in _MODELS if fnmatch.fnmatchcase(name, pattern))


def get_model_builder(name: str) -> Callable[..., keras.Model]:
    """The builder registered as `name`; unknown names raise with close suggestions."""
    try:
        return _MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name, _MODELS, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(
            f"Unknown model name '{name}'.{hint} "
            f"Valid names: {', '.join(list_models())} (see zoo.list_models())."
        ) from None


def create_model(name: str, **kwargs) -> keras.Model:
    """Builds the registered model `name` with the builder's keyword arguments.

    Example:
        >>> from byot_keras import zoo
        >>> model = zoo.create_model("resnet18_byot", num_classes=10, width_multiplier=0.125)
        >>> model.exit_names
        ['exit_1', 'exit_2', 'exit_3', 'exit_4']
    """
    return get_model_builder(name)(**kwargs)
