"""Chapter 11: a store on disk: one file per key, written aside, synced, renamed."""

import os
from pathlib import Path

from cube.lab.exercise import exercise


@exercise("ch11_store")
class FolderStore:
    """Text values under keys, one file each in ``folder``; a crash, even a power cut,
    leaves each value either as it was or as it was being written, never half of each,
    and a put that returned survives it."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def put(self, key, text):
        """Keep ``text`` under ``key``, replacing what was there."""
        temporary = self.folder / f".{key}.tmp"  # not a *.json name, so keys() skips it
        with open(temporary, "w") as f:
            f.write(text)
            f.flush()  # from Python's buffer to the kernel's page cache
            os.fsync(f.fileno())  # from the page cache to the disk
        os.replace(temporary, self.folder / f"{key}.json")  # atomic: old or new, never half
        folder = os.open(self.folder, os.O_RDONLY)  # the rename is the folder's to keep
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    def get(self, key):
        """The text under ``key``; KeyError when there is none."""
        try:
            return (self.folder / f"{key}.json").read_text()
        except FileNotFoundError:
            raise KeyError(key) from None

    def keys(self):
        """Every key that holds a value."""
        return [path.stem for path in self.folder.glob("*.json")]
