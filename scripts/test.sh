#!/usr/bin/env bash
# Set up (first time) and run the default test suite (slow tests excluded; add -m "" for all).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
[ -x .ci/install_browser.sh ] && [ "${MORL_BROWSER_TESTS:-1}" = "1" ] && bash .ci/install_browser.sh || true
export HF_HUB_OFFLINE=1 MORL_THREADS=1
exec .venv/bin/python -m pytest -m "not slow" "$@"
