"""Which data picked the final checkpoint and which data scored the reported table: kept apart, the
reported change is not chosen on the data that reports it."""

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Selection:
    """How the reported model was chosen.

    Attributes:
        selected_on: the data whose `val/score` picked the checkpoint (and that sweeps, pruning and
            early stopping optimise).
        scored_on: the data the reported before/after table is evaluated on.
        step: the chosen checkpoint's optimizer step.
        candidates: evaluations during training that the choice was among.
        sweep: whether the run is a sweep trial (its `val/score` also chooses between trials).
    """

    selected_on: str
    scored_on: str
    step: int
    candidates: int
    sweep: bool = False

    @property
    def same_data(self) -> bool:
        return self.selected_on == self.scored_on

    def describe(self) -> str:
        """One sentence for the report: what chose, among how many, and what scored."""
        chose = (
            f"The checkpoint (step {self.step}) was chosen by val/score on {self.selected_on} among "
            f"{self.candidates} evaluation(s) during training"
        )
        if self.sweep:
            chose += ", and that val/score ranks this sweep trial"
        if self.same_data:
            return f"{chose}; the table is scored on the same data."
        return f"{chose}; the table is scored on {self.scored_on}, which chose nothing."

    def warning(self) -> str | None:
        """A warning when the reported table is scored on the data that chose between several
        candidates (None when the data differ, or nothing was chosen)."""
        if not self.same_data or (self.candidates <= 1 and not self.sweep):
            return None
        return (
            f"The reported metrics are scored on the data that chose the model ({self.selected_on}), so they are "
            "optimistic: give validation data (data.validation_size to hold out training queries, or "
            "data.validation_path / data.validation_split) to choose on it and report on the eval data."
        )

    def to_json(self) -> dict:
        return {**asdict(self), "same_data": self.same_data, "warning": self.warning()}
