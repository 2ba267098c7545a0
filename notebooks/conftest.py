"""nbval runs the notebooks with the solutions: each ``@exercise`` cell then uses the
solution of the same name (see :mod:`cube.lab.exercise`), and a check that fails raises,
failing the run. The stub-mode run is tests/test_exercises.py."""

import os

os.environ["CUBE_SOLUTIONS"] = "1"
