#!/usr/bin/env bash
# THE test command (README, CI):   bash tools/run_tests.sh [pytest args ...]
# Installs what is missing (tools/install.sh: a few seconds when everything is there),
# then runs the test suite on CPU. Extra arguments go to pytest, e.g.
#   bash tools/run_tests.sh -k packaging -x
# Environment: TINYVIM_SKIP_INSTALL=1 skips the install step (see tools/install.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
cd "$ROOT"

bash tools/install.sh

echo "[tests] $PYTHON -m pytest tests -q $*"
# Tests that need the editable install fail (rather than skip) when it is missing.
export TINYVIM_REQUIRE_INSTALLED="${TINYVIM_REQUIRE_INSTALLED:-1}"
exec "$PYTHON" -m pytest tests -q "$@"
