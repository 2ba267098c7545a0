"""Chapter 11: a store on disk: one file per key, replaced atomically."""

import os
from pathlib import Path

from cube.lab.exercise import exercise


@exercise("ch11_store")
class FolderStore:
    """Text values under keys, one file each in ``folder``; a crash leaves each value
    either as it was or as it was being written, never half of each."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def put(self, key, text):
        """Keep ``text`` under ``key``, replacing what was there."""
        temporary = self.folder / f".{key}.tmp"  # not a *.json name, so keys() skips it
        temporary.write_text(text)
        os.replace(temporary, self.folder / f"{key}.json")  # atomic: old or new, never half

    def get(self, key):
        """The text under ``key``; KeyError when there is none."""
        try:
            return (self.folder / f"{key}.json").read_text()
        except FileNotFoundError:
            raise KeyError(key) from None

    def keys(self):
        """Every key that holds a value."""
        return [path.stem for path in self.folder.glob("*.json")]
