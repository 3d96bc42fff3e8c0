"""What the bench scripts share: the machine line and the load average, timing, percentages and intervals,
markdown tables, and writing a report (its markdown, and its JSON beside it).

The scripts run as ``python bench/NAME.py``: this folder is the script's own, so it is on ``sys.path`` and
``from _common import ...`` finds this file. The machine line is the package's own (``fer_features.reporting.
machine``, which the ``experiment`` command's reports use too).
"""
from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from fer_features.reporting.machine import cpu_model, machine_info  # noqa: F401  (the scripts import them from here)


# -- the machine, and its load -----------------------------------------------------------------------------
def load_average(when: str) -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load average, printed (stderr) as ``load average <when>: ...``. Every script
    prints it before and after its run: the cores are shared with other work, and the load explains timings."""
    load = os.getloadavg()
    print(f"load average {when}: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} ({os.cpu_count()} cores)",
          file=sys.stderr, flush=True)
    return load


def start_run() -> float:
    """Print the load average before a run; the run's start (``time.perf_counter()``)."""
    load_average("before")
    return time.perf_counter()


def run_seconds(start: float) -> float:
    """Print the load average after a run; its seconds since ``start`` (from :func:`start_run`)."""
    load_average("after")
    return time.perf_counter() - start


# -- timing ------------------------------------------------------------------------------------------------
def best_of(fn: Callable[[], Any], k: int = 3, warmup: bool = True) -> float:
    """Seconds of the fastest of ``k`` calls of ``fn``, after one warm-up call (files cached, graphs traced)
    unless ``warmup`` is False."""
    if warmup:
        fn()
    best = float("inf")
    for _ in range(k):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def quiet_timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """(``fn(*args)``, its seconds), with warnings silenced (convergence warnings of a fit, say)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        out = fn(*args)
        return out, time.perf_counter() - t


# -- percentages and intervals ------------------------------------------------------------------------------
def pct(x: float | None, digits: int = 1) -> str:
    """'72.8': a fraction in percent; '-' for None."""
    return "-" if x is None else f"{100 * x:.{digits}f}"


def with_ci(x: float | None, ci: Sequence[float] | None) -> str:
    """'72.8 [66.1, 79.0]': a fraction and its 95 % interval, in percent (the fraction alone without one)."""
    return f"{pct(x)} [{pct(ci[0])}, {pct(ci[1])}]" if ci else pct(x)


def acc_ci(r: dict) -> str:
    """A result's accuracy with its interval (``accuracy``, ``accuracy_ci``), as :func:`with_ci`."""
    return with_ci(r["accuracy"], r.get("accuracy_ci"))


def diff_ci(t: dict, unit: str = "") -> str:
    """'+3.9 [+2.1, +5.6]' (with ``unit``: '+3.9 points [+2.1, +5.6]'): a paired test's difference (``diff``)
    and its interval (``lo``, ``hi``), in points."""
    return f"{100 * t['diff']:+.1f}{' ' + unit if unit else ''} [{100 * t['lo']:+.1f}, {100 * t['hi']:+.1f}]"


def p_value(p: float) -> str:
    """'0.41', '0.003' or '<0.001'."""
    return f"{p:.2f}" if p >= 0.01 else f"{p:.3f}" if p >= 0.001 else "<0.001"


# -- markdown tables ---------------------------------------------------------------------------------------
def md_row(cells: Iterable[Any]) -> str:
    """'| a | b |': one markdown table line."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def md_table(head: Sequence[str], align: str, rows: Iterable[Iterable[Any]] = ()) -> list[str]:
    """A markdown table's lines: the header ``head``, the alignment line (``align``: a letter a column, 'l'
    left, 'r' right) and a line per row of cells."""
    return [md_row(head), "|" + "|".join("---:" if c == "r" else "---" for c in align) + "|",
            *(md_row(r) for r in rows)]


# -- saving ------------------------------------------------------------------------------------------------
def save_report(path: str | Path, md: str | Sequence[str], data: Any = None, *, end: str = "\n",
                echo: bool = True) -> Path:
    """Write the markdown ``md`` (its lines, or the whole text) and ``end`` to ``path``, and ``data`` (unless
    None) as JSON beside it (``path`` with ``.json``, through a temporary file: a stopped run never leaves half a
    file), making the folder; print the markdown unless ``echo`` is False. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is not None:
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=1, default=str))
        tmp.replace(path.with_suffix(".json"))
    text = md if isinstance(md, str) else "\n".join(md)
    path.write_text(text + end)
    if echo:
        print(text)
    return path
