"""How long a run trains: batches per epoch, epochs, all steps and its real last epoch."""

from dataclasses import dataclass


@dataclass(frozen=True)
class RunLength:
    """How long a run trains: batches per epoch, epochs, and all steps (max_steps cap).

    Attributes:
        steps_per_epoch: batches of one epoch.
        epochs: planned epochs (``train.epochs``).
        total_steps: steps the run takes, ``train.max_steps`` included.
    """

    steps_per_epoch: int
    epochs: int
    total_steps: int

    @property
    def last_epoch(self) -> int:
        """The 1-based epoch the run ends in: ``epochs``, or the one ``max_steps`` cuts.

        The trainer ends it as the run's last (``EpochView.is_last``), so a schedule's
        "plus the last epoch" is this one, not ``epochs``.
        """
        return min(self.epochs, max(1, -(-self.total_steps // self.steps_per_epoch)))
