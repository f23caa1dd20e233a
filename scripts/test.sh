#!/usr/bin/env bash
# Set up, then run the test suite (tests needing ../shared skip with a reason when it is absent).
# Tests run in 3 processes (many wait on real-time streams and subprocesses; VIDSIEVE_TEST_JOBS changes
# it, 0 runs them in this process), one file per process at a time, so a file's fixtures are made once.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export YOLO_OFFLINE=1
jobs=${VIDSIEVE_TEST_JOBS:-3}
if [ "$jobs" = 0 ]; then
    exec .venv/bin/python -m pytest -q "$@"
fi
exec .venv/bin/python -m pytest -q -n "$jobs" --dist loadfile "$@"
