#!/usr/bin/env bash
# Real-browser test dependencies for CI: Debian's Chromium (Playwright's own browser download
# needs a CDN that CI cannot reach), Playwright's Python driver, and kaleido for PNG export
# (it drives the same Chromium). Run as root (or with sudo) from the repository root:
#     .ci/install_browser.sh
# Then: python -m pytest tests/test_browser.py  (screenshots land in tests/screenshots/).
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver fonts-liberation

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
"$PYTHON" -m pip install --quiet "playwright==1.65.2" "kaleido==1.5.0"

chromium --version || /usr/bin/chromium --version
"$PYTHON" -c "import playwright, kaleido; print('playwright and kaleido installed')"
