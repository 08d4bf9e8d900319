"""byot-keras: multi-exit CNNs trained by self-distillation with plain `model.fit`."""

__version__ = "0.1.0"

from byot_keras import losses, training, zoo  # noqa: E402
from byot_keras.losses import BYOTLoss, byot_loss  # noqa: E402
from byot_keras.training import SelfDistillationModel  # noqa: E402

__all__ = ["BYOTLoss", "SelfDistillationModel", "byot_loss", "losses", "training", "zoo"]
