"""Virtual time and one seeded queue of everything that happens.

A :class:`World` is the simulator's whole notion of time: a clock that moves only when
the next event is taken off the queue, and a seeded random source for every choice the
simulation makes. Two worlds made with the same seed, fed the same events, take the
same choices in the same order: that is what makes a run replayable. Ties in time are
broken by the order events were queued, never by anything outside the seed.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

EPOCH = 1_800_000_000.0  # where virtual time starts (a date in 2027): any fixed point


@dataclass(order=True)
class Event:
    at: float
    seq: int
    what: str = field(compare=False)
    action: Callable[[], None] = field(compare=False)


class World:
    """The clock (:class:`cube.clock.Clock`), the queue, the random source and the log."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = EPOCH
        self._queue: list[Event] = []
        self._seq = itertools.count()
        self.log: list[str] = []
        self.steps = 0

    # the clock, as cube.clock reads it
    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now - EPOCH + 1000.0

    @property
    def elapsed(self) -> float:
        """Seconds since the run began."""
        return self.now - EPOCH

    def at(self, elapsed: float, what: str, action: Callable[[], None]) -> None:
        """Queue ``action`` at ``elapsed`` seconds into the run."""
        heapq.heappush(self._queue, Event(EPOCH + elapsed, next(self._seq), what, action))

    def after(self, delay: float, what: str, action: Callable[[], None]) -> None:
        self.at(self.elapsed + max(0.0, delay), what, action)

    def next_at(self) -> float | None:
        return self._queue[0].at - EPOCH if self._queue else None

    def step(self) -> Event | None:
        """Take the next event and move the clock to it (the caller runs it)."""
        if not self._queue:
            return None
        event = heapq.heappop(self._queue)
        self.now = max(self.now, event.at)
        self.steps += 1
        return event

    def advance(self, elapsed: float) -> None:
        """Move the clock to ``elapsed`` seconds into the run (never back)."""
        self.now = max(self.now, EPOCH + elapsed)

    def say(self, who: str, what: str) -> None:
        """One line of the run's story, stamped with virtual time."""
        self.log.append(f"{self.elapsed:9.3f}  {who:<10} {what}")

    def jitter(self, period: float, spread: float = 0.2) -> float:
        """``period``, give or take ``spread`` of it: loops of different components
        drift against each other, and the seed decides how."""
        return period * (1.0 + self.rng.uniform(-spread, spread))
