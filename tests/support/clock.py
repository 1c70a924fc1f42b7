"""Time that tests move instead of sleeping: in this process (`MovableClock`, installed with
config.use_clock) or in every server process at once (`ClockFile`, read through CLOCK_FILE)."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

# A fixed, ordinary moment, so that nothing depends on when the suite runs.
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class MovableClock:
    """A clock for this process that stands still until the test moves it."""

    def __init__(self, start: datetime = START) -> None:
        self.moment = start

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, **delta: float) -> datetime:
        self.moment += timedelta(**delta)
        return self.moment


class ClockFile:
    """The time every server started with CLOCK_FILE=path reads on each call."""

    def __init__(self, path: Path, start: datetime = START) -> None:
        self.path = path
        self.set(start)

    def set(self, moment: datetime) -> None:
        # Written whole under another name and renamed, so no reader sees half a timestamp.
        partial = self.path.with_suffix(".partial")
        partial.write_text(moment.isoformat())
        partial.replace(self.path)
        self.moment = moment

    def advance(self, **delta: float) -> datetime:
        self.set(self.moment + timedelta(**delta))
        return self.moment
