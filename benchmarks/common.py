"""Shared plumbing for the benchmark suites: threads, machine facts, workers, markdown.

Nothing here imports NumPy at module level: :func:`pin_threads` has to run before the
first ``import numpy`` of a process, or the BLAS/OpenMP thread pools are already sized.

A suite is a module with

* ``run_case(case: dict) -> dict``: one measurement, executed in a fresh worker process
  (``python benchmarks/<suite>.py --case JSON``) so that its peak RSS is its own;
* ``run_suite(opts) -> str``: runs its cases through :func:`run_worker` and returns the
  markdown section for ``BENCHMARKS.md``.
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent


def tntp_dir(name: str) -> Path | None:
    """Where network ``name``'s TNTP files are: the repository's copy (examples/data/tntp),
    else ``$CROWDSTEER_TNTP``, else ``../shared/data/tntp`` beside the repository; ``None``
    when none has its net and trips files."""
    local = REPO / "examples" / "data" / "tntp"
    shared = Path(os.environ.get("CROWDSTEER_TNTP", REPO.parent / "shared" / "data" / "tntp"))
    for d in (local, shared):
        if (d / f"{name}_net.tntp").is_file() and (d / f"{name}_trips.tntp").is_file():
            return d
    return None
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
MIB = 1024.0 * 1024.0


def pin_threads() -> None:
    """Force single-threaded BLAS/OpenMP; call before NumPy is imported (it is checked).

    Calling it again after NumPy was imported is fine as long as the pins were already
    in place (a suite module imported by ``run.py``, which pinned first).
    """
    already = all(os.environ.get(var) == "1" for var in THREAD_VARS)
    for var in THREAD_VARS:
        os.environ[var] = "1"
    if "numpy" in sys.modules and not already:
        raise RuntimeError("pin_threads() must run before numpy is imported")


def limit_torch_threads() -> None:
    """One intra-op and one inter-op thread, if torch has been imported by the code under test."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


# --------------------------------------------------------------------------- machine facts


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    m = re.search(r"^model name\s*:\s*(.+)$", text, flags=re.M)
    return m.group(1).strip() if m else "unknown"


def machine_info() -> dict:
    import numpy as np
    import scipy

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "nproc": usable,
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "python": platform.python_version(),
        "threads": {v: os.environ.get(v) for v in THREAD_VARS[:3]},
        "loadavg": os.getloadavg(),
    }


# --------------------------------------------------------------------------- measuring


def peak_rss_mib() -> float:
    """High-water resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def repeat_timing(fn: Callable[[], float], repeats: int) -> list[float]:
    """Call ``fn`` (which returns the quantity to keep, e.g. seconds per iteration) ``repeats``
    times; the caller reports min and median."""
    return [fn() for _ in range(max(1, repeats))]


def summary(values: Sequence[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "n": len(values),
            "all": list(values)}


def worker_main(run_case: Callable[[dict], dict]) -> None:
    """Entry point of a worker process: ``--case JSON`` in, one JSON line out."""
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--case", required=True, help="the case as JSON")
    args = p.parse_args()
    case = json.loads(args.case)
    out = run_case(case)
    out["peak_rss_mib"] = peak_rss_mib()
    print("RESULT " + json.dumps(out))


def run_worker(script: str, case: dict, timeout: float = 900.0) -> dict:
    """Run one case in a fresh interpreter (single-threaded env) and return its result dict."""
    env = dict(os.environ)
    for var in THREAD_VARS:
        env[var] = "1"
    env.setdefault("PYTHONHASHSEED", "0")
    cmd = [sys.executable, str(BENCH_DIR / script), "--case", json.dumps(case)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {script} failed on {case}:\n{proc.stderr[-4000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"worker {script} printed no result for {case}:\n{proc.stdout[-2000:]}")
    out = json.loads(lines[-1][len("RESULT "):])
    out["wall_s"] = time.perf_counter() - t0
    return out


# --------------------------------------------------------------------------- markdown


def fmt_time(s: float | None) -> str:
    """Seconds in a readable unit, 3 significant figures."""
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.3g} µs"
    if s < 1:
        return f"{s * 1e3:.3g} ms"
    return f"{s:.3g} s"


def fmt_sci(x: float | None) -> str:
    return "-" if x is None else f"{x:.1e}"


def fmt_mib(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def fmt_ratio(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}x" if x >= 10 else f"{x:.1f}x"


def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def provenance(command: str, info: dict, started: float, repeats_note: str) -> str:
    """The lines every section starts with: how, when and where it was measured."""
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    threads = ", ".join(f"{k}={v}" for k, v in info["threads"].items())
    load = " / ".join(f"{x:.2f}" for x in info["loadavg"])
    load_end = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return "\n".join([
        f"- Command: `{command}`",
        f"- Date: {date}; suite wall time {time.perf_counter() - started:.0f} s",
        f"- Machine: {info['cpu_model']}, nproc = {info['nproc']}; Python {info['python']}, "
        f"NumPy {info['numpy']}, SciPy {info['scipy']}",
        (f"- Single-threaded: {threads} set before NumPy is imported; every case runs in a "
         "fresh subprocess" if all(v is not None for v in info["threads"].values()) else
         "- Threads: not pinned (every case runs in a fresh subprocess with the library's "
         "defaults, both cores where it uses them)"),
        f"- Load average (1/5/15 min) at the start: {load}; at the end: {load_end} (a load "
        f"above {info['nproc']} means other work competed for the cores)",
        f"- Timing: {repeats_note}",
    ])


def marker(name: str, end: bool) -> str:
    return f"<!-- bench:{name}:{'end' if end else 'start'} -->"


def update_section(path: Path, name: str, body: str, preamble: str) -> None:
    """Replace the text between the markers of section ``name`` (append it if absent)."""
    text = path.read_text() if path.exists() else preamble
    block = f"{marker(name, False)}\n{body.rstrip()}\n{marker(name, True)}"
    pattern = re.compile(re.escape(marker(name, False)) + r".*?" + re.escape(marker(name, True)),
                         flags=re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
