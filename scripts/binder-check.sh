#!/usr/bin/env bash
# A Binder-like build from binder/ alone, then every notebook executed in it.
#
# Like Binder: a fresh environment with the Python of runtime.txt, requirements.txt
# installed, postBuild run from a clean copy of the repository, start wrapping the
# command. Usage: scripts/binder-check.sh [WORKDIR]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d)}
mkdir -p "$work"

version=$(sed -n 's/^python-\([0-9.]*\).*/\1/p' "$repo/binder/runtime.txt")
python=$(command -v "python$version" || true)
[ -n "$python" ] || { echo "runtime.txt asks for Python $version, which is not installed"; exit 1; }

git -C "$repo" archive --format=tar HEAD | (mkdir -p "$work/repo" && tar -x -C "$work/repo")
"$python" -m venv "$work/env"
export PATH="$work/env/bin:$PATH"
# (no byte-compiling of every installed file: imports compile what they use)
python -m pip install -q --no-compile -r "$work/repo/binder/requirements.txt"
(cd "$work/repo" && bash binder/postBuild)

cd "$work/repo/notebooks"
# Three at a time: each notebook mostly waits on the processes it starts.
printf '%s\n' [0-9][0-9]-*.ipynb | xargs -P 3 -I{} sh -c '
  echo "executing {}"
  "$1/repo/binder/start" jupyter nbconvert --to notebook --execute \
    --ExecutePreprocessor.timeout=120 --output-dir "$1/out" "{}" >/dev/null 2>"$1/{}.err" \
    || { echo "{} failed:"; tail -20 "$1/{}.err"; exit 255; }' _ "$work"
echo "all notebooks ran in the Binder-like environment"
