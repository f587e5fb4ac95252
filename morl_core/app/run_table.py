"""Managing runs on the Train page, as in TensorBoard or W&B: tags and notes, a filtered runs table,
config diffs, EMA-smoothed curves (one line per policy, runs overlaid) and a cost estimate from
past runs. Pure functions, except the readers/writers named ``read_*``/``write_*``/``past_*``."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from morl_core import runfolder
from morl_core.colors import FALLBACK_COLORS

# --- tags and notes ----------------------------------------------------------------------------

NOTES = "notes.json"  # the app's one file in a run folder, beside config.json
MAX_TAGS, MAX_NOTE_CHARS = 12, 2000
TAG = re.compile(r"[\w.+-]{1,32}")


def parse_tags(text: str) -> list[str]:
    """Comma- or space-separated tags, in order, without repeats; a bad tag or too many raise."""
    tags = list(dict.fromkeys(t for t in re.split(r"[,\s]+", str(text)) if t))
    bad = [t for t in tags if not TAG.fullmatch(t)]
    if bad:
        raise ValueError(f"tags: {bad} not allowed; letters, digits and . _ + -, 1-32 each")
    if len(tags) > MAX_TAGS:
        raise ValueError(f"tags: {len(tags)} given; at most {MAX_TAGS}")
    return tags


def write_notes(run_dir: Path, tags: str, note: str) -> None:
    """Store tags (text, see :func:`parse_tags`) and a note in ``notes.json`` atomically; bad
    tags, a note over ``MAX_NOTE_CHARS`` or a symlinked notes file raise ValueError."""
    if len(note) > MAX_NOTE_CHARS:
        raise ValueError(f"note: {len(note)} characters; at most {MAX_NOTE_CHARS}")
    path = Path(run_dir) / NOTES
    if path.is_symlink():
        raise ValueError("note: this run's notes file is a symlink; refused")
    runfolder.write_json_atomic(path, {"tags": parse_tags(tags), "note": note})


def read_notes(run_dir: Path) -> dict[str, Any]:
    """``{"tags": [...], "note": str}`` of a run; empty when absent, unreadable or malformed."""
    data = read_config(run_dir, NOTES)
    tags = data["tags"] if isinstance(data.get("tags"), list) else []
    note = data["note"] if isinstance(data.get("note"), str) else ""
    tags = [t for t in tags if isinstance(t, str) and TAG.fullmatch(t)]
    return {"tags": tags[:MAX_TAGS], "note": note[:MAX_NOTE_CHARS]}


def read_config(run_dir: Path, name: str = runfolder.CONFIG) -> dict[str, Any]:
    """The JSON object ``name`` (``config.json``) in a run folder; empty if absent or unreadable."""
    try:
        data = runfolder.read_json(Path(run_dir) / name)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# --- the runs table ------------------------------------------------------------------------------

SORTS = ("created", "run", "method", "state", "progress")
FILTERS = ("method", "state", "objectives", "tags")
Rows = Sequence[Mapping[str, Any]]  # table rows or metric records


def table_rows(statuses, notes: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per run: id, method, objectives, state, step, progress, tags, note, message."""
    rows = []
    for s in statuses:
        extra = notes.get(s.run_id) or {"tags": [], "note": ""}
        rows.append(
            {
                "run": s.run_id,
                "method": s.method,
                "objectives": list(s.objectives),
                "state": str(s.state),
                "step": f"{s.step}/{s.total_steps}",
                "progress": round(s.progress, 3),
                "tags": list(extra["tags"]),
                "note": extra["note"],
                "message": s.message,
                "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(s.created or 0)),
            }
        )
    return rows


def filter_choices(rows: Rows) -> dict[str, list[str]]:
    """The values each filter column takes in ``rows``."""
    listed = lambda v: v if isinstance(v, list) else [v]  # noqa: E731
    return {c: sorted({v for r in rows for v in listed(r[c])}) for c in FILTERS}


def filter_rows(
    rows: Rows,
    filters: Mapping[str, Sequence[str]] | None = None,
    text: str = "",
    sort: str = "created",
    descending: bool = True,
) -> list[Mapping[str, Any]]:
    """Rows matching every filter (column -> wanted values: a list column needs all of them, any
    other one of them) and ``text`` (case-insensitive, in id, method, tags, note and message)."""
    filters = {c: w for c, w in (filters or {}).items() if w}
    bad = sorted(set(filters) - set(FILTERS)) or ([sort] if sort not in SORTS else [])
    if bad:
        raise ValueError(f"{bad}: allowed filters {', '.join(FILTERS)}; sorts {', '.join(SORTS)}")
    needle = text.strip().lower()

    def keep(r: Mapping[str, Any]) -> bool:
        hay = " ".join([r["run"], r["method"], *r["tags"], r["note"], r["message"]]).lower()
        matched = (
            set(w) <= set(r[c]) if isinstance(r[c], list) else r[c] in w for c, w in filters.items()
        )
        return all(matched) and needle in hay

    return sorted(filter(keep, rows), key=lambda r: r[sort], reverse=descending)


def config_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[dict[str, str]]:
    """The fields where two ``config.json`` documents differ (``options.NAME`` one by one)."""

    def flat(config: Mapping[str, Any]) -> dict[str, Any]:
        options = {f"options.{k}": v for k, v in (config.get("options") or {}).items()}
        return {k: v for k, v in config.items() if k != "options"} | options

    def show(value: Any) -> str:
        if value is None:
            return "—"
        return ", ".join(map(str, value)) if isinstance(value, list) else str(value)

    fa, fb = flat(a), flat(b)
    keys = sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))
    return [{"field": k, "A": show(fa.get(k)), "B": show(fb.get(k))} for k in keys]


# --- curves --------------------------------------------------------------------------------------

X_AXES = {"step": "step", "samples": "samples", "wall time (s)": "time"}  # label -> metric key
X_TITLES = {key: label for label, key in X_AXES.items()}
Line = tuple[np.ndarray, np.ndarray, np.ndarray]  # (x, raw y, smoothed y)


def smooth(values: Sequence[float | None], weight: float) -> np.ndarray:
    """TensorBoard's smoothing: an EMA debiased at the start; ``weight`` in [0, 1), 0 is the values.
    Missing values (None, NaN) stay missing and do not enter the average."""
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing: {weight}; allowed: 0 <= smoothing < 1")
    y = np.array([np.nan if v is None else v for v in values], dtype=float)
    out, last, seen = np.full_like(y, np.nan), 0.0, 0
    for i, v in enumerate(y):
        if np.isfinite(v):
            last, seen = weight * last + (1 - weight) * v, seen + 1
            out[i] = last / (1 - weight**seen)
    return out


def policy_lines(
    rows: Rows, key: str, x_axis: str = "step", smoothing: float = 0.0
) -> dict[str, Line]:
    """One line per policy a run trains in turn (its rows' ``stage``; unnamed for a single one),
    each on the run's own x-axis, not one line jumping between them; wall time from row one."""
    if x_axis not in X_AXES.values():
        raise ValueError(f"x_axis: {x_axis!r}; allowed: {', '.join(X_AXES.values())}")
    stages: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        stages.setdefault(str(r.get("stage") or ""), []).append(r)
    start = float(rows[0].get("time") or 0.0) if rows and x_axis == "time" else 0.0
    lines = {}
    for stage, part in stages.items():
        x = np.array([float(r.get(x_axis) or 0.0) for r in part]) - start
        y = [r.get(key) for r in part]
        lines[stage if len(stages) > 1 else ""] = (x, smooth(y, 0.0), smooth(y, smoothing))
    return lines


def metric_keys(rows: Rows) -> list[str]:
    """The numeric metrics recorded in ``rows``, rewards first."""
    numeric = (k for r in rows for k, v in runfolder.metric_values(r).items() if _is_number(v))
    return sorted(set(numeric), key=lambda k: (not k.startswith("reward/"), k))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float))


def curves_figure(panels: Mapping[str, dict[str, Line]], x_title: str, cols: int = 3) -> go.Figure:
    """Panels of lines (title -> line name -> line); a name keeps one colour and one legend entry
    across panels; when smoothed, the raw line stays faint behind (TensorBoard)."""
    cols = max(1, min(cols, len(panels)))
    n_rows = -(-len(panels) // cols)
    fig = make_subplots(n_rows, cols, subplot_titles=list(panels), horizontal_spacing=0.08)
    colours: dict[str, str] = {}
    for i, lines in enumerate(panels.values()):
        at = {"row": i // cols + 1, "col": i % cols + 1}
        for name, (x, raw, smoothed) in lines.items():
            legend = name not in colours and bool(name)  # one entry per name, none unnamed
            colour = colours.setdefault(name, FALLBACK_COLORS[len(colours) % len(FALLBACK_COLORS)])
            style = {"x": x, "legendgroup": name, "line": {"color": colour}}
            style["mode"] = "lines+markers" if len(x) == 1 else "lines"
            if not np.array_equal(raw, smoothed, equal_nan=True):
                faint = go.Scatter(y=raw, opacity=0.25, showlegend=False, hoverinfo="skip", **style)
                fig.add_trace(faint, **at)
            line = go.Scatter(y=smoothed, name=name or "run", showlegend=legend, **style)
            fig.add_trace(line, **at)
    fig.update_xaxes(title_text=x_title, row=n_rows)
    margin = {"l": 50, "r": 20, "t": 40, "b": 45}
    legend = {"orientation": "h", "y": -0.2}
    return fig.update_layout(height=260 * n_rows + 60, legend=legend, margin=margin)


def training_figure(rows, objectives: Sequence[str], x_axis: str, smoothing: float) -> go.Figure:
    """The live view: a reward panel per objective, KL to base and length; one line per policy."""
    keys = {f"reward: {o}": f"reward/{o}" for o in objectives}
    keys |= {"KL to base": "kl", "length (tokens)": "length"}
    panels = {title: policy_lines(rows, key, x_axis, smoothing) for title, key in keys.items()}
    return curves_figure(panels, X_TITLES[x_axis])


def overlay_figure(runs: Mapping[str, Rows], key: str, x_axis: str, smoothing: float) -> go.Figure:
    """One metric of several runs on one chart: a line per run (per policy if it trains several)."""
    lines = {
        f"{label} · {stage}" if stage else label: line
        for label, rows in runs.items()
        for stage, line in policy_lines(rows, key, x_axis, smoothing).items()
    }
    return curves_figure({key: lines}, X_TITLES[x_axis], cols=1)


# --- cost estimate -------------------------------------------------------------------------------

# With no past run on this server: seconds per prompt x sample x new token of one step, measured
# on the shipped demo runs (embedded model, CPU, one thread: 1.3-2.6 s per step of 4 x 4 x 24).
GUESS_SECONDS_PER_UNIT = 0.005


@dataclass(frozen=True)
class StepTiming:
    """How long one past run took per step."""

    method: str
    seconds_per_step: float  # of its longest attempt; evaluations and checkpoints in, loading not
    work: int  # the step's size: batch_prompts x k_samples x max_new_tokens
    steps_ratio: float  # recorded steps per configured ``steps`` (one policy per preference: >1)


def _work(config: Mapping[str, Any]) -> int:
    work = int(config["batch_prompts"]) * int(config["k_samples"]) * int(config["max_new_tokens"])
    return max(1, work)


def step_timing(config: Mapping[str, Any], rows: Rows) -> StepTiming | None:
    """The timing of a run from its config and metric rows; None with under three steps timed."""
    attempts: dict[Any, list[Mapping[str, Any]]] = {}
    for r in rows:
        if _is_number(r.get("time")):
            attempts.setdefault(r.get("attempt"), []).append(r)
    part = max(attempts.values(), key=len, default=[])
    if len(part) < 3 or part[-1]["step"] <= part[0]["step"]:
        return None
    seconds = (part[-1]["time"] - part[0]["time"]) / (part[-1]["step"] - part[0]["step"])
    ratio = float(part[-1].get("total_steps") or config["steps"]) / max(1, int(config["steps"]))
    return StepTiming(str(config["method"]), seconds, _work(config), ratio)


def past_timings(executor, model: str, device: str, limit: int = 12) -> list[StepTiming]:
    """Timings of the newest finished runs of this store on ``model`` and ``device``."""
    found = []
    for status in (s for s in executor.list() if s.done):
        if len(found) >= limit:
            break
        run_dir = executor.store.run_dir(status.run_id)
        config = read_config(run_dir)
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):  # skip a bad run
            if (config.get("model"), config.get("device")) == (model, device):
                timing = step_timing(config, runfolder.read_metrics(run_dir)[0])
                found += [timing] if timing else []
    return found


def duration(seconds: float) -> str:
    """``45 s``, ``12 min`` or ``2.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def estimate_cost(values: Mapping[str, Any], timings: Sequence[StepTiming]) -> tuple[float, str]:
    """(seconds, a line with its basis) for a run of the form's ``values``: past runs' median
    seconds per unit of step size x this step's size x ``steps`` x the median ratio of recorded to
    configured steps of past runs of the same method; with no past run a guess, said so."""
    work = _work(values)
    same = [t.steps_ratio for t in timings if t.method == values["method"]]
    total = int(values["steps"]) * (float(np.median(same)) if same else 1.0)
    counted = f"{total:.0f} steps" + ("" if same else " per policy")  # none counted policies
    where = f"{values['model']} run{'s' * (len(timings) != 1)} (device {values['device']})"
    if timings:
        per_step = float(np.median([t.seconds_per_step / t.work for t in timings])) * work
        basis = f" from {len(timings)} past {where}: {per_step:.1f} s/step"
    else:
        per_step = GUESS_SECONDS_PER_UNIT * work
        basis = f", a guess: no past {where} here yet; {per_step:.1f} s/step as on the demo runs"
    return total * per_step, f"≈ {duration(total * per_step)}{basis} × {counted}"
