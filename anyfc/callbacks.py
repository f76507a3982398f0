"""``anyfc.callbacks``: what ``fit(..., callbacks=[...])`` takes (defined in
``anyfc.training.callbacks``)."""

from .training.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
    Run,
)

__all__ = ["CSVLogger", "Callback", "EarlyStopping", "LearningRateScheduler",
           "ModelCheckpoint", "ReduceLROnPlateau", "Run"]
