"""Shared test setup: offline hub, pinned torch threads (2-core machines stall otherwise)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The pages are tested on the embedded model's shipped demos, whichever larger ones ship beside
# them (the SmolLM2 demos the app lands on have tests of their own).
os.environ.setdefault("MORL_UI_DEMO_MODELS", "embedded")

# Tests keep prompt files, model folders and run stores under tmp_path: allow the temp folder
# as the operator of a server would with MORL_ALLOWED_PATHS (tests of the refusal unset it).
import tempfile  # noqa: E402

os.environ.setdefault("MORL_ALLOWED_PATHS", tempfile.gettempdir())
