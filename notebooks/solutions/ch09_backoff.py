"""Chapter 9: exponential backoff: wait longer before each restart, up to a cap."""

from cube.lab.exercise import exercise
from cube.task import RestartPolicy


@exercise("ch09_backoff")
class Backoff(RestartPolicy):
    """Restart up to ``limit`` times, waiting longer each time."""

    def backoff(self, restarts_so_far):
        """Seconds to wait before restart number ``restarts_so_far + 1``."""
        return min(self.cap, self.base * 2**restarts_so_far)
