"""Device, dtype and thread choices, made once per process.

Two cores shared by a UI and a trainer stall each other when torch picks its own thread count,
so every process that runs torch calls :func:`set_threads` first (default: 1).
"""

from __future__ import annotations

import contextlib

from morl_core import settings

DEFAULT_THREADS = settings.threads()
_chosen: int | None = None  # the count this process last asked for by number


def set_threads(threads: int | None = None) -> int:
    """Pin torch's intra- and inter-op threads for this process; returns the count used.

    ``None`` keeps the count this process last asked for by number (``MORL_THREADS``, default
    1, before any): loading a model does not undo a caller's choice, such as the UI's
    ``MORL_UI_THREADS``."""
    global _chosen
    import torch

    n = (_chosen or DEFAULT_THREADS) if threads is None else int(threads)
    if not 1 <= n <= settings.MAX_THREADS:  # refused before torch starts a thread
        raise ValueError(f"threads must be in [1, {settings.MAX_THREADS}], got {threads!r}")
    if threads is not None:
        _chosen = n
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    # inter-op threads are settable only before the first parallel op; keep what is there
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(n)
    return n


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; explicit names are checked."""
    import torch

    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            "device 'cuda' was asked for but torch sees no CUDA GPU; use 'auto' or 'cpu'"
        )
    return device


def resolve_dtype(dtype: str, device: str):
    """'auto' -> bf16 on a GPU that supports it, else fp32. Log-probs stay fp32 elsewhere."""
    import torch

    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    table |= {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if dtype == "auto":
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if dtype not in table:
        raise ValueError(f"dtype must be 'auto' or one of {', '.join(table)}, got {dtype!r}")
    return table[dtype]
