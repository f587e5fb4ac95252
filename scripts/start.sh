#!/usr/bin/env bash
# Set up (first time) and start the app (SmolLM2 demos first): http://localhost:8501
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} MORL_THREADS=${MORL_THREADS:-1}
exec .venv/bin/streamlit run app.py "$@"
