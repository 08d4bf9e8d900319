"""Every network builder by name: the ground floor of the zoo.

A family module registers each variant (`resnet18_byot` = `build_resnet(basic_block,
(2, 2, 2, 2), ...)`) with its documentation; calling a registered builder returns a
`MultiExitNetwork` (the functional network and its exits' structure), built with
`byot_keras.networks.namespace`'s Keras (Keras 3, or tf_keras for the twin). The public
builders of `byot_keras.zoo` add the training method and pretrained weights on top.

Example:
    >>> built = build_network("resnet18_byot", num_classes=10, width_multiplier=0.125)
    >>> [info.section for info in built.exits]
    [1, 2, 3, 4]
"""

from __future__ import annotations

import dataclasses
import fnmatch
import inspect
from collections.abc import Callable, Sequence

from byot_keras.networks.structure import MultiExitNetwork


@dataclasses.dataclass(frozen=True)
class NetworkBuilder:
    """A registered network: `build(*fixed_args, *args, **keywords)`."""

    name: str
    build: Callable[..., MultiExitNetwork]
    fixed_args: tuple = ()
    doc: str | None = None
    single_exit: bool = False

    def __call__(self, *args, **keywords) -> MultiExitNetwork:
        if self.single_exit:
            exits = keywords.pop("exits", None)
            if exits is not None and (not isinstance(exits, list | tuple) or len(exits) > 0):
                raise ValueError(_no_exits_message(self.name, exits))
            keywords["exits"] = ()
        name = inspect.signature(self.build).parameters.get("name")
        if name is not None and name.default is inspect.Parameter.empty:
            keywords.setdefault("name", self.name)  # a variant: named after itself
        return self.build(*self.fixed_args, *args, **keywords)

    @property
    def documentation(self) -> str:
        return self.doc or self.build.__doc__ or ""

    @property
    def options(self) -> set[str]:
        """The keywords this builder takes: the build function's keyword-only parameters
        and the positional ones the variant does not fix (`depth`, `width`)."""
        parameters = list(inspect.signature(self.build).parameters.values())
        positional = [p.name for p in parameters
                      if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
        return ({p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
                | set(positional[len(self.fixed_args):]))


def _no_exits_message(name: str, exits) -> str:
    return (f"{name} is the single-exit network and takes no shallow exits (got "
            f"exits={exits!r}); use {name}_byot(exits=...) for a multi-exit model.")


_NETWORKS: dict[str, NetworkBuilder] = {}


def _add(builder: NetworkBuilder) -> NetworkBuilder:
    if builder.name in _NETWORKS:
        raise ValueError(f"A network named '{builder.name}' is already registered.")
    _NETWORKS[builder.name] = builder
    return builder


def register_network(build: Callable[..., MultiExitNetwork]) -> Callable[..., MultiExitNetwork]:
    """Decorator: registers a build function under its own name (its docstring documents
    the public builder, read when the zoo is built); returns the function."""
    _add(NetworkBuilder(build.__name__, build))
    return build


def register_variant(name: str, build: Callable[..., MultiExitNetwork], doc: str,
                     *fixed_args) -> NetworkBuilder:
    """Registers `name` as `build(*fixed_args, ...)` (e.g. resnet50_byot =
    build_resnet(bottleneck_block, (3, 4, 6, 3))); `doc` documents the public builder."""
    return _add(NetworkBuilder(name, build, fixed_args, doc))


def register_single_exit_variant(name: str, build: Callable[..., MultiExitNetwork], doc: str,
                                 *fixed_args) -> NetworkBuilder:
    """Registers `name`: `build`'s network with no shallow exit (one output, `exit_1`);
    a non-empty `exits` is refused, pointing to the multi-exit `<name>_byot`."""
    return _add(NetworkBuilder(name, build, fixed_args, doc, single_exit=True))


def plain_variant_example(name: str) -> str:
    """The docstring example of the single-exit variant `name`: how to build it (not run)
    and the keyword it refuses (run).

    It builds nothing: the `<name>_byot` example builds the same trunk, and building the
    deep ones twice (ResNet-152: 500+ layers) would double the docstring examples' run
    time in the test suite."""
    return ("        >>> from byot_keras import zoo\n"
            f"        >>> model = zoo.{name}(num_classes=10)  # doctest: +SKIP\n"
            f"        >>> zoo.{name}(num_classes=10, exits=[1])\n"
            "        Traceback (most recent call last):\n        ...\n"
            f"        ValueError: {_no_exits_message(name, [1])}\n")


def register_plain_variant(multi_exit) -> NetworkBuilder:
    """Registers the single-exit form of a `<name>_byot` builder (a `NetworkBuilder` or a
    function registered with `register_network`) as `<name>`: the plain architecture,
    e.g. `resnet18` beside `resnet18_byot`."""
    if not isinstance(multi_exit, NetworkBuilder):
        multi_exit = _NETWORKS[multi_exit.__name__]
    if not multi_exit.name.endswith("_byot"):
        raise ValueError(f"'{multi_exit.name}' is not a multi-exit (_byot) builder.")
    name = multi_exit.name[: -len("_byot")]
    doc = (f"Builds the plain single-exit network of `{multi_exit.name}` (one output, "
           f"`exit_1`; the baseline).\n\n    Takes the keywords of `{multi_exit.name}` "
           f"except `exits`.\n\n    Example:\n{plain_variant_example(name)}")
    return register_single_exit_variant(name, multi_exit.build, doc, *multi_exit.fixed_args)


def list_networks(pattern: str = "*") -> list[str]:
    """Sorted names of the registered networks that match a shell-style `pattern`."""
    return sorted(name for name in _NETWORKS if fnmatch.fnmatchcase(name, pattern))


def get_network_builder(name: str) -> NetworkBuilder:
    """The builder registered as `name`; KeyError otherwise (the zoo turns it into a
    message with suggestions)."""
    return _NETWORKS[name]


def build_network(name: str, **keywords) -> MultiExitNetwork:
    """Builds the registered network `name` with the builder's keywords."""
    return get_network_builder(name)(**keywords)


def known_names() -> Sequence[str]:
    return list(_NETWORKS)
