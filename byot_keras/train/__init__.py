"""The training recipe behind `byot-train`: presets, the trainer, reports.

    from byot_keras.train import make_config, train
    report = train(make_config("byot_cifar", data_dir="~/tensorflow_datasets"))
"""

from byot_keras.train.config import TrainConfig
from byot_keras.train.presets import PRESETS, list_presets, make_config
from byot_keras.train.trainer import TrainingDiverged, train

__all__ = ["PRESETS", "TrainConfig", "TrainingDiverged", "list_presets", "make_config", "train"]
