"""Chapter 3: what a runtime reports about one of its processes."""

import signal

from cube.lab.exercise import exercise
from cube.runtime import Status


@exercise("ch03_status_of")
def status_of(process, container_id):
    """A Status for ``process`` (a subprocess.Popen): running, or how it ended and why."""
    code = process.poll()
    if code is None:
        return Status(container_id, running=True, state="running")
    if code < 0:  # killed by a signal: Docker reports 128 + the signal's number
        name = signal.Signals(-code).name
        return Status(container_id, False, "exited", 128 - code, f"killed by {name}")
    return Status(container_id, False, "exited", code, f"exited with code {code}")
