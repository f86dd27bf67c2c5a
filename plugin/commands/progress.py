"""A one-line progress bar for long command-line runs (`process --since`, imports)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


class Progress:
    """A one-line progress bar on a terminal — count, rate, time left; nothing when stderr is
    a file or a pipe (a log stays free of carriage returns)."""

    def __init__(
        self, total: int, unit: str = "days", clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.total, self.count, self.unit = total, 0, unit
        self.clock = clock
        self.started = clock()
        self.enabled = sys.stderr.isatty()

    def line(self) -> str:
        """The bar as it reads now."""
        filled = int(30 * self.count / max(1, self.total))
        bar = "#" * filled + "-" * (30 - filled)
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = self.count / elapsed
        left = (self.total - self.count) / rate if rate else 0.0
        minutes, seconds = divmod(int(left + 0.5), 60)
        return (
            f"[{bar}] {self.count}/{self.total} {self.unit}, {rate:,.1f}/s, "
            f"{minutes}:{seconds:02d} left"
        )

    def step(self) -> None:
        self.count += 1
        if self.enabled:
            print(f"\r{self.line()}", end="", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.enabled:
            print(file=sys.stderr)
