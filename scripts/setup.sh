#!/usr/bin/env bash
# Creates .venv and installs vidsieve into it (editable, with test extras).
# Idempotent: with pyproject.toml unchanged since the last run, it returns in well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.setup-stamp
want=$( (cat pyproject.toml; $PY --version 2>&1) | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
echo "vidsieve: setting up .venv (first run takes a few minutes)" >&2
[ -x .venv/bin/python ] || $PY -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if ! .venv/bin/python -m pip install -q -e ".[test]" > .venv/setup.log 2>&1; then
    tail -30 .venv/setup.log >&2
    echo "vidsieve: set-up failed; the full log is .venv/setup.log" >&2
    exit 1
fi
# ultralytics asks for opencv-python, which installs the same cv2 module as the headless build
# vidsieve pins; two packages writing one module clash, so keep the headless one alone.
if .venv/bin/python -m pip show -q opencv-python >/dev/null 2>&1; then
    .venv/bin/python -m pip uninstall -q -y opencv-python >> .venv/setup.log 2>&1
    headless=$(sed -n 's/.*"\(opencv-python-headless==[^"]*\)".*/\1/p' pyproject.toml)
    if ! .venv/bin/python -m pip install -q --force-reinstall --no-deps "$headless" >> .venv/setup.log 2>&1; then
        tail -30 .venv/setup.log >&2
        echo "vidsieve: set-up failed; the full log is .venv/setup.log" >&2
        exit 1
    fi
fi
echo "$want" > "$stamp"
