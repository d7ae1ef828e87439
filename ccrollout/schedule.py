"""A stage's clock: how long to sample before the change, to wait after it, and to bake,
how often to sample, and how much longer an undecided bake may go on. The one place
where seconds become intervals."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    baseline: float   # seconds sampled before the change
    settle: float     # seconds waited after the change, so old connections finish
    bake: float       # seconds watched after the settle before the verdict
    interval: float   # seconds between two samples
    max_extend: float = 0.0  # seconds an inconclusive bake may go on (on_inconclusive: extend)

    def intervals(self, seconds: float) -> int:
        """Whole sampling intervals in SECONDS (rounded, as a bake counts them)."""
        return round(seconds / self.interval)

    @property
    def bake_intervals(self) -> int:
        return self.intervals(self.bake)

    @property
    def baseline_intervals(self) -> int:
        return self.intervals(self.baseline)

    @property
    def max_extend_intervals(self) -> int:
        return self.intervals(self.max_extend)

    @property
    def longest_stage(self) -> float:
        """The most a stage can last, baseline to verdict, without the time to change hosts."""
        return self.baseline + self.settle + self.bake + self.max_extend
