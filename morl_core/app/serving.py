"""Serving trained artifacts to many sessions: one shared copy of each, steering.

Artifacts (:mod:`morl_core.app.catalog` finds them) are demo run folders and finished runs;
:class:`ModelPool` loads each once per process and lends it to one thread at a time;
:func:`steer` turns one preference into scored completions. Torch loads only when a model is
first needed, so the first page renders fast.
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from morl_core import objectives, settings
from morl_core.app.catalog import ui_allows_imports
from morl_core.policy import load_policy, set_threads
from morl_core.weights import check_weights

# progress(message, fraction_done in [0, 1]); the pages draw it as a progress bar.
Progress = Callable[[str, float], None]
# on_text(the replies so far, one per completion): a page redraws them as they are written.
TextCallback = Callable[[list[str]], None]

# --- steering settings ---------------------------------------------------------------------

# The evaluation protocol's decoding (morl_core.evaluation), also the Steer default.
STEER_DECODING = {"max_new_tokens": 24, "temperature": 1.0, "top_p": 0.9}
# Steer replies are as long as the artifact's training replies, up to this many tokens (an
# instruct model's answer needs ~100; every token more is decode time the user waits for).
STEER_MAX_NEW_TOKENS = 128
# A streamed reply's first token is drawn at once, then the reply is redrawn at most this often
# (seconds), and once finished. Each redraw is a message to the browser and a repaint: at 0.05
# s, Chromium spent ~560 ms of CPU per streamed reply on a shared 2-core machine
# (benchmarks/ui_latency.py --steer-latency); ~7 redraws a second still read as typing.
STREAM_INTERVAL = 0.15


def noop(message: str, fraction: float) -> None:
    return None


def steer_decoding(run_dir: Path | None) -> dict[str, Any]:
    """How Steer decodes an artifact: :data:`STEER_DECODING` with the ``max_new_tokens`` the
    artifact was trained with (its ``config.json``), capped at :data:`STEER_MAX_NEW_TOKENS`.

    The base model (``run_dir=None``) and a folder that records no length get the default.
    Every Steer generation and the precomputed lattice use this, so their replies match.
    """
    length = None
    if run_dir is not None:
        try:
            length = json.loads((Path(run_dir) / "config.json").read_text()).get("max_new_tokens")
        except (OSError, ValueError, AttributeError):
            length = None
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        return dict(STEER_DECODING)
    return {**STEER_DECODING, "max_new_tokens": min(length, STEER_MAX_NEW_TOKENS)}


_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[/\\][\w.~@+-]+){2,}[/\\]?")


def user_message(exc: BaseException | str) -> str:
    """An error as one plain line for the user, absolute paths cut to their last part (the full
    message belongs in the server log only)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return _PATH.sub(lambda m: "…/" + re.split(r"[/\\]", m.group(0).rstrip("/\\"))[-1], text)


# --- shared models ---------------------------------------------------------------------------


class BaseSteerable:
    """The base model as a Steerable that ignores the preference (the 'before RL' reference)."""

    passes_per_token = 1
    models_kept = 1

    def __init__(self, policy, objectives: Sequence[str] = ()):
        self.policy = policy
        self.objectives = tuple(objectives)

    def generate(self, prompts, weights=None, **gen: Any) -> list[str]:
        """Completions of the base model (``weights`` is ignored)."""
        return self.policy.generate(list(prompts), **gen)


class SharedSteerable:
    """A loaded Steerable shared by every session of the process, safe from many threads.

    A generation borrows a free replica of the model for its duration (no two threads drive one
    model at once). An LRU cache of recent generations makes repeated slider positions instant
    for everyone, and a request already in progress for another session is waited for, not
    generated twice.
    """

    def __init__(
        self,
        steerable,
        method: str,
        run_dir: Path | None,
        cache_size: int = 512,
        replicas: Sequence[Any] = (),
    ):
        self.steerable = steerable  # the first replica; its attributes describe all of them
        self.replicas = [steerable, *replicas]
        self.method = method
        self.run_dir = run_dir
        self.objectives = tuple(getattr(steerable, "objectives", ()))
        self.passes_per_token = int(getattr(steerable, "passes_per_token", 1))
        self.models_kept = int(getattr(steerable, "models_kept", 1))
        self.decoding = steer_decoding(run_dir)  # the artifact's Steer decoding
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        for replica in self.replicas:
            self._free.put(replica)
        self._cache: OrderedDict[tuple, list[str]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        self._inflight: dict[tuple, threading.Event] = {}

    @contextlib.contextmanager
    def replica(self) -> Iterator[Any]:
        """Borrow a free replica (waits while all are busy); it is returned on exit."""
        steerable = self._free.get()
        try:
            yield steerable
        finally:
            self._free.put(steerable)

    @property
    def streams(self) -> bool:
        """Whether its generations can be watched token by token (:class:`ReplyStream`): the
        steerable decodes with a :class:`~morl_core.policy.Policy`, as every method here does."""
        policy = getattr(self.steerable, "policy", None)
        return callable(getattr(policy, "decode", None)) and hasattr(policy, "eos_id")

    def generate_cached(
        self,
        prompts: Sequence[str],
        weights: Sequence[float],
        *,
        on_step: Callable[[Any, Any], None] | None = None,
        **gen: Any,
    ):
        """``(completions, from_cache)`` for ``prompts`` at preference ``weights`` (named apart
        from the steerables' ``generate``, which returns the completions alone).

        ``on_step`` (the sampling loop's per-step callback, see :class:`ReplyStream`) watches a
        generation that runs here; it is not called for a cached reply and is not part of the
        cache key (it changes no text).
        """
        key = (
            tuple(prompts),
            tuple(round(float(w), 4) for w in weights),
            tuple(sorted(gen.items())),
        )
        while True:
            with self._cache_lock:
                if key in self._cache:
                    self._cache.move_to_end(key)
                    return list(self._cache[key]), True
                pending = self._inflight.get(key)
                if pending is None:  # nobody is generating this: we do
                    done = self._inflight[key] = threading.Event()
                    break
            pending.wait()  # the same request is being generated: wait and read it
        try:
            watch = {} if on_step is None else {"on_step": on_step}
            with self.replica() as steerable:
                texts = steerable.generate(list(prompts), list(weights), **watch, **gen)
            with self._cache_lock:
                self._cache[key] = list(texts)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        finally:
            with self._cache_lock:
                del self._inflight[key]
            done.set()
        return texts, False


class ReplyStream:
    """Watches one batched decode step by step (it is the sampling loop's ``on_step``): when
    the first token came, and the replies so far for ``on_text``.

    The texts are decoded from the tokens so far as the finished replies are
    (:meth:`~morl_core.policy.Policy.decode`), so the last texts ``on_text`` gets are exactly
    the replies the generation returns. It draws no random numbers: watching a generation does
    not change it.
    """

    def __init__(
        self,
        policy,
        max_new_tokens: int,
        on_text: TextCallback | None = None,
        *,
        interval: float = STREAM_INTERVAL,
        start: float | None = None,
    ):
        self.policy = policy
        self.max_new_tokens = int(max_new_tokens)
        self.on_text = on_text
        self.interval = interval  # seconds between two redraws of unfinished replies
        self.start = time.perf_counter() if start is None else start
        self.first_token_seconds: float | None = None
        self._tokens: list[Any] = []  # per step: tokens (B,)
        self._live: list[Any] = []  # per step: 1 where the row was still generating (B,)
        self._drawn = float("-inf")

    def __call__(self, tokens, live) -> None:
        now = time.perf_counter()
        if self.first_token_seconds is None:
            self.first_token_seconds = now - self.start
        self._tokens.append(tokens)
        self._live.append(live)
        if self.on_text is None:
            return
        going = live.bool() & (tokens != self.policy.eos_id)  # (B,) rows that go on
        finished = len(self._tokens) >= self.max_new_tokens or not bool(going.any())
        if finished or now - self._drawn >= self.interval:
            self._drawn = now
            self.on_text(self.texts(partial=not finished))

    def texts(self, partial: bool = False) -> list[str]:
        """The replies decoded so far; ``partial`` holds back a character still being written
        (it decodes as U+FFFD until its last byte's token arrives)."""
        import torch

        if not self._tokens:
            return []
        ids, mask = torch.stack(self._tokens, 1), torch.stack(self._live, 1)  # (B, T)
        texts = self.policy.decode(ids, mask)
        return [t.rstrip("\ufffd") for t in texts] if partial else texts


class ModelPool:
    """Load-once registry of :class:`SharedSteerable` s for one process (thread-safe): each key
    loads once even when many sessions ask at the same time (a lock per key)."""

    def __init__(
        self, device: str = "auto", threads: int | None = None, replicas: int | None = None
    ):
        self.device = device
        self.threads = threads or settings.ui_threads()
        self.replicas = replicas
        self._models: dict[tuple, SharedSteerable] = {}
        self._failures: dict[tuple, str] = {}  # a method that cannot serve a run stays failed
        self._locks: dict[tuple, threading.Lock] = {}
        self._guard = threading.Lock()

    def loaded(self, run_dir: Path | None, method: str) -> bool:
        """Whether ``(run_dir, method)`` is already in memory (or known not to load)."""
        key = (str(run_dir), method)
        return key in self._models or key in self._failures

    def get(
        self, run_dir: Path | None, method: str, progress: Progress | None = None
    ) -> SharedSteerable:
        """The shared steerable of ``run_dir`` served by ``method`` (``run_dir=None``: base model).

        Raises:
            ValueError: the folder holds no artifact, or the method cannot serve it.
        """
        key = (str(run_dir), method)
        if key in self._models:
            return self._models[key]
        if key in self._failures:
            raise ValueError(self._failures[key])
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key in self._failures:
                raise ValueError(self._failures[key])
            if key not in self._models:
                try:
                    self._models[key] = self._load(run_dir, method, progress or noop)
                except (ValueError, OSError) as exc:
                    self._failures[key] = str(exc)
                    raise ValueError(str(exc)) from None
        return self._models[key]

    def _load(self, run_dir: Path | None, method: str, progress: Progress) -> SharedSteerable:
        progress("importing torch and transformers (first time only)", 0.05)
        set_threads(self.threads)
        # More copies let generations run in parallel, one torch thread each; it pays on a server
        # with spare cores (a busy 2-core machine: 4.8 -> 5.1 generations/s with 2 copies of the
        # embedded model, the decode loop holding the GIL), not on a GPU.
        count = self.replicas or settings.ui_replicas()
        loaded: list[Any] = []
        for i in range(count):
            message = f"loading the model and its adapters (copy {i + 1} of {count})"
            progress(message, 0.2 + 0.6 * i / count)
            if run_dir is None:
                loaded.append(BaseSteerable(load_policy("embedded", device=self.device)))
            else:
                from morl_core.methods.common import load_steerable  # imports torch

                loaded.append(load_steerable(Path(run_dir), method=method, device=self.device))
        if run_dir is not None:
            progress("loading the objective scorers", 0.85)
            objectives.prepare(list(loaded[0].objectives), allow_import=ui_allows_imports())
        progress("ready", 1.0)
        return SharedSteerable(loaded[0], method, run_dir, replicas=loaded[1:])


# --- steering --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Generation:
    """One completion and its per-objective scores (each in [0, 1] for built-ins)."""

    prompt: str
    text: str
    scores: dict[str, float]


@dataclass(frozen=True)
class SteerResult:
    """What one preference gives: the completions, their scores and what it cost."""

    method: str
    weights: tuple[float, ...]
    generations: list[Generation]
    seconds: float  # the whole call: replies written (or looked up) and scored
    cached: bool  # from the cache or the precomputed lattice: nothing was generated
    passes_per_token: int
    models_kept: int
    first_token_seconds: float | None = None  # when the first token came; None: not generated
    reply_seconds: float | None = None  # when the whole reply was written; None: not generated
    precomputed: bool = False  # read from the artifact's lattice (no model loaded)

    @property
    def timing(self) -> str:
        """What the reply took, for the page: time to the first token and to the whole reply,
        or where it came from when nothing was generated."""
        if self.precomputed or self.cached:
            source = "precomputed" if self.precomputed else "cached"
            return f"{source} · {self.seconds * 1e3:.0f} ms"
        whole = self.seconds if self.reply_seconds is None else self.reply_seconds
        if self.first_token_seconds is None:
            return f"whole reply {whole * 1e3:.0f} ms"
        first = self.first_token_seconds * 1e3
        return f"first token {first:.0f} ms · whole reply {whole * 1e3:.0f} ms"

    @property
    def mean_scores(self) -> dict[str, float]:
        """Mean score per objective over the generations."""
        names = list(self.generations[0].scores) if self.generations else []
        return {n: float(np.mean([g.scores[n] for g in self.generations])) for n in names}


def score_texts(objective_names: Sequence[str], prompts: Sequence[str], texts: Sequence[str]):
    """(N, K) scores with the UI's import policy."""
    return objectives.score(
        list(objective_names), list(prompts), list(texts), allow_import=ui_allows_imports()
    )


def steer(
    shared: SharedSteerable,
    prompt: str,
    weights: Sequence[float],
    *,
    samples: int = 2,
    seed: int = 0,
    on_text: TextCallback | None = None,
    stream_interval: float = STREAM_INTERVAL,
    **decoding: Any,
) -> SteerResult:
    """Generate ``samples`` completions of ``prompt`` at preference ``weights`` and score them.

    One batched decode with a fixed seed and the artifact's decoding (``shared.decoding``,
    overridden by ``decoding``), so moving a slider changes the text only through the
    preference. ``on_text`` sees the replies as they are written (at most every
    ``stream_interval`` seconds, and once finished); the replies are the same with or without
    it. Raises ``ValueError`` on an empty prompt or weights off the simplex.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt: type a prompt or pick an example")
    w = check_weights(weights, k=len(shared.objectives))
    gen = {**shared.decoding, **decoding, "seed": int(seed)}
    start = time.perf_counter()
    stream = None
    if shared.streams:
        stream = ReplyStream(
            shared.steerable.policy,
            gen["max_new_tokens"],
            on_text,
            interval=stream_interval,
            start=start,
        )
    watch = {} if stream is None else {"on_step": stream}
    texts, cached = shared.generate_cached([prompt] * int(samples), w.tolist(), **watch, **gen)
    written = time.perf_counter() - start
    scores = score_texts(shared.objectives, [prompt] * len(texts), texts)  # (N, K)
    generations = [
        Generation(prompt, text, {n: float(v) for n, v in zip(shared.objectives, row, strict=True)})
        for text, row in zip(texts, scores, strict=True)
    ]
    return SteerResult(
        method=shared.method,
        weights=tuple(float(x) for x in w),
        generations=generations,
        seconds=time.perf_counter() - start,
        cached=cached,
        passes_per_token=shared.passes_per_token,
        models_kept=shared.models_kept,
        first_token_seconds=None if cached or stream is None else stream.first_token_seconds,
        reply_seconds=None if cached else written,
    )
