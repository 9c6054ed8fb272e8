#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image (this bundle
# unpacked in $AUTOGRADER_ROOT/source). Running it again changes nothing.
# It installs bubblewrap (the sandbox for student code), a Python >= 3.11 and, in
# $AUTOGRADER_ROOT/venv, exactly the pinned packages of requirements.txt and constraints.txt.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="${AUTOGRADER_ROOT:-/autograder}"
VENV="$ROOT/venv"
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1

have_apt=0
if command -v apt-get >/dev/null 2>&1; then
  have_apt=1
  apt-get update -qq
  # Without bubblewrap grading still works, with resource limits and a user switch only.
  apt-get install -y -qq bubblewrap >/dev/null || echo "setup.sh: bubblewrap is not available"
fi

python_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }
PY=""
for candidate in python3.13 python3.12 python3.11 python3; do
  if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then PY="$candidate"; break; fi
done
if [ -z "$PY" ]; then
  [ "$have_apt" = 1 ] || { echo "setup.sh: no Python >= 3.11 and no apt-get to install one" >&2; exit 1; }
  apt-get install -y -qq python3.11 python3.11-venv >/dev/null
  PY=python3.11
fi

if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  rm -rf "$VENV"
  if ! "$PY" -m venv "$VENV"; then
    # Debian and Ubuntu ship the venv module apart.
    [ "$have_apt" = 1 ] && apt-get install -y -qq "$("$PY" -c 'import sys; print("python%d.%d-venv" % sys.version_info[:2])')" >/dev/null
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
  fi
fi
"$VENV/bin/python" -m pip install --quiet --no-input -r "$HERE/requirements.txt" -c "$HERE/constraints.txt"
cd "$HERE" && "$VENV/bin/python" -c 'import torch, nbgrader, autograder.grading.pipeline; print("setup.sh: ready, torch", torch.__version__)'
