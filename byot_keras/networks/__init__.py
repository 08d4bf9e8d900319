"""The networks: every family's builder of multi-exit functional Keras networks and their
structure (the ground floor: nothing here knows about training). Importing the package
registers every network (`byot_keras.networks.registry`); `byot_keras.zoo` turns each into
a public builder that adds a training method and pretrained weights.

Example:
    >>> from byot_keras import networks
    >>> built = networks.build_network("vgg11_byot", num_classes=10, width_multiplier=0.125)
    >>> len(built.exits), built.network.name
    (5, 'vgg11_byot_network')
"""

# batch_norm registers FusedBatchNormalization, so a saved model loads in a process that
# built no network.
from byot_keras.networks import (  # noqa: F401
    alexnet,
    batch_norm,
    densenet,
    resnet,
    resnext,
    vgg,
    wide_resnet,
)
from byot_keras.networks.registry import (
    NetworkBuilder,
    build_network,
    get_network_builder,
    list_networks,
)
from byot_keras.networks.structure import ExitInfo, MultiExitNetwork, forms_a_chain

__all__ = [
    "ExitInfo",
    "MultiExitNetwork",
    "NetworkBuilder",
    "build_network",
    "forms_a_chain",
    "get_network_builder",
    "list_networks",
]
