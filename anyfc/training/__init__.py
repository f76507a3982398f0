"""Training: the loop (``loop``), one step (``step``), where data comes from (``data``),
callbacks (``callbacks``) and what ``fit`` returns (``history``). These modules work on
the model object they are handed and never import ``anyfc.model``."""

from . import callbacks
from .callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    LearningRateScheduler,
    ModelCheckpoint,
    NoImprovementStopping,
    ReduceLROnPlateau,
)
from .history import History

__all__ = [
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "History",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "NoImprovementStopping",
    "ReduceLROnPlateau",
    "callbacks",
]
