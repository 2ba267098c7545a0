"""``python -m cube ...`` is the ``cube`` command."""

from cube.cli import main

main()
