"""A multi-exit network's structure as data (in the spirit of timm's `feature_info`): for
every exit, the trunk section it hangs off, the width of its feature, and whether it is a
link of the early-exit chain or a side-by-side branch. Exporters, the trainer and the
tf_keras twin read this instead of parsing layer names.

Example:
    >>> info = ExitInfo("exit_1", section=1, feature_width=64, kind=CHAIN)
    >>> ExitInfo.from_dict(info.to_dict()) == info
    True
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

CHAIN = "chain"  # after trunk section `section`; later exits continue the same trunk
BRANCH = "branch"  # a parallel copy of the last stage (ONE); no cascade through it
GATE = "gate"  # the gated mix of the branches (ONE's teacher)
KINDS = (CHAIN, BRANCH, GATE)


@dataclasses.dataclass(frozen=True)
class ExitInfo:
    """One exit of a multi-exit network (exits are `exit_1` .. `exit_N`, shallow to
    deep)."""

    name: str
    section: int | None  # 1-based trunk section; None for branches and the gate
    feature_width: int
    kind: str = CHAIN

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ExitInfo:
        return cls(str(values["name"]), None if values.get("section") is None
                   else int(values["section"]), int(values["feature_width"]),
                   str(values.get("kind", CHAIN)))


class MultiExitNetwork(NamedTuple):
    """What a network builder returns: the functional network (outputs `exit_k` logits
    and `feature_k` features) and its exits' structure."""

    network: object
    exits: tuple[ExitInfo, ...]


def forms_a_chain(exits) -> bool:
    """Whether an early-exit cascade can run through the exits in order."""
    return all(info.kind == CHAIN for info in exits)


def structure_from_layer_names(network) -> tuple[ExitInfo, ...]:
    """The structure of a network saved before models recorded it (byot-keras 0.1 `.keras`
    files), read off the builders' layer names: an exit's section is the deepest
    `section_k` layer its logits depend on; in a ONE network (a layer named "gate") the
    exits are branches and the last is the gate."""
    import keras

    exit_names = sorted((n for n in network.output if n.startswith("exit_")),
                        key=lambda n: int(n.split("_")[1]))
    gated = any(layer.name == "gate" for layer in network.layers)
    exits = []
    for index, name in enumerate(exit_names, start=1):
        width = int(network.output[f"feature_{index}"].shape[-1])
        if gated:
            exits.append(ExitInfo(name, None, width,
                                  GATE if index == len(exit_names) else BRANCH))
            continue
        sub = keras.Model(network.inputs, network.get_layer(name).output)
        sections = [int(layer.name.split("_")[1]) for layer in sub.layers
                    if layer.name.startswith("section_") and layer.name[8:].isdigit()]
        # A network built outside the zoo may name no sections: its exits' sections are
        # unknown (None), which only the early-exit cascade needs.
        exits.append(ExitInfo(name, max(sections) if sections else None, width, CHAIN))
    return tuple(exits)
