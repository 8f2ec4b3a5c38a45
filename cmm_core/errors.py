"""Exceptions raised by cmm_core for bad input a user can fix."""

__all__ = ["DataError", "TrainingError"]


class DataError(ValueError):
  """A data set or file that cannot be used; the message says why and what to do."""


class TrainingError(ValueError):
  """Hyper-parameters or a training run that cannot go on; the message says what to change."""
