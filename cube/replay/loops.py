"""The components' background loops (:mod:`cube.loops`) as events of the world.

In production each loop is a thread. Here a loop belongs to the component whose code
started it (the one running then), and to that component's life: each round is an
event of the world, run as that component's code (so a crash point in it kills the
component), skipped while the component is paused (it runs once the component resumes,
as a frozen process's due timer fires when it thaws) and never run again once that life
ended (a crash, as SIGKILL ends every thread).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from cube.loops import Step, run_step
from cube.replay.world import World

# The shortest wait between two rounds: virtual time is seconds since 1970 in a float,
# which cannot tell apart instants closer than about a microsecond, so a shorter wait
# would run again at the very same instant, for ever.
TICK = 0.001


class Components(Protocol):
    """What the loops need of the cluster."""

    world: World
    running: str
    paused: set[str]

    def life(self, name: str) -> int: ...

    def run_as(self, name: str, body: Callable[[], None]) -> None: ...


class SimLoop:
    """One loop: its next round is one queued event (a newer one makes it stale)."""

    def __init__(self, components: Components, name: str, step: Step) -> None:
        self.c, self.name, self.step = components, name, step
        self.owner = components.running
        self.life = components.life(self.owner)
        self.stopped = False
        self.thawing = False  # its owner is paused; the round waits for it to resume
        self._turn = 0
        self._queue(0.0)

    def wake(self) -> None:
        if not self.stopped:
            self._queue(0.0)

    def stop(self) -> None:
        self.stopped = True

    @property
    def alive(self) -> bool:
        return not self.stopped and self.c.life(self.owner) == self.life

    def resume(self) -> None:
        """The owner thawed: a round that waited runs now."""
        if self.thawing:
            self.thawing = False
            self._queue(0.0)

    def _queue(self, delay: float) -> None:
        self._turn += 1
        turn = self._turn
        self.c.world.after(delay, self.name, lambda: self._round(turn))

    def _round(self, turn: int) -> None:
        if turn != self._turn or not self.alive:
            return
        if self.owner in self.c.paused:
            self.thawing = True
            return
        wait: list[float | None] = [None]

        def body() -> None:
            wait[0] = run_step(self.name, self.step)

        self.c.run_as(self.owner, body)
        if wait[0] is not None and self.alive and turn == self._turn:
            self._queue(max(wait[0], TICK))


class SimLoops:
    """The runner :func:`cube.loops.simulated` takes: every loop started in the run."""

    def __init__(self, components: Components) -> None:
        self.c = components
        self.loops: list[SimLoop] = []

    def __call__(self, name: str, step: Step) -> SimLoop:
        loop = SimLoop(self.c, name, step)
        self.loops = [each for each in self.loops if each.alive]
        self.loops.append(loop)
        return loop

    def resumed(self, owner: str) -> None:
        for loop in self.loops:
            if loop.owner == owner and loop.alive:
                loop.resume()
