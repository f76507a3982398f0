"""``anyfc.callbacks``: what ``fit(..., callbacks=[...])`` takes (defined in
``anyfc.training.callbacks``)."""

from .training.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    LearningRateScheduler,
    ModelCheckpoint,
    NoImprovementStopping,
    ReduceLROnPlateau,
    Run,
)

__all__ = ["CSVLogger", "Callback", "EarlyStopping", "LearningRateScheduler",
           "ModelCheckpoint", "NoImprovementStopping", "ReduceLROnPlateau", "Run"]
