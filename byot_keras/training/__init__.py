"""The training models: `keras.Model` subclasses that wire a loss from
byot_keras.losses to networks, so a plain `fit` trains them.

- :class:`SelfDistillationModel`: one multi-exit network (byot, msd, eed, sdn,
  deep_supervision, ce, cskd, one);
- :class:`CohortModel`: several networks trained together (multistructure, dml);
- :class:`TeacherDistillationModel`: a pretrained teacher distilled into every exit of a
  multi-exit student (Hinton KD).
"""

from byot_keras.training.cohort import CohortModel
from byot_keras.training.schedule import EpochClock, ScheduledModel
from byot_keras.training.self_distillation import (
    SelfDistillationModel,
    resolve_objective,
)
from byot_keras.training.teacher import TeacherDistillationModel

__all__ = [
    "CohortModel",
    "EpochClock",
    "ScheduledModel",
    "SelfDistillationModel",
    "TeacherDistillationModel",
    "resolve_objective",
]
