"""Run the benchmark suites and rewrite their sections of ``BENCHMARKS.md``.

``make bench`` runs every suite in full (about 10 minutes on 2 cores) and rewrites
``BENCHMARKS.md``. ``--quick`` is a smoke run (under a minute) that prints its markdown
and leaves ``BENCHMARKS.md`` alone unless ``--write`` is given.

Examples
--------
.venv/bin/python benchmarks/run.py                      # everything, rewrites BENCHMARKS.md
.venv/bin/python benchmarks/run.py --only solver        # one suite, rewrites its section only
.venv/bin/python benchmarks/run.py --only peers         # OpenSpiel and MFGLib side by side
.venv/bin/python benchmarks/run.py --quick              # smoke run, prints the tables
"""

from __future__ import annotations

import common

common.pin_threads()  # before anything imports numpy, here and in every worker process

import argparse  # noqa: E402
import os  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

# peers, head_to_head and network's peer: skipped unless their optional dependencies are installed
SUITES = ("solver", "convergence", "model_free", "metaagent", "steering", "envs", "peers",
          "head_to_head", "network", "blackbox", "ppo", "learners")
PREAMBLE = """# Benchmarks

Speed and scale of the equilibrium engine, measured by `benchmarks/run.py`
(`make bench`; `--only NAME` for one suite: solver, convergence, model_free, metaagent,
steering, envs, peers, head_to_head, network, blackbox, ppo, learners; `--quick` for a smoke run that
does not touch this file). Each section below is rewritten by the suite that produced it
and states its own command, date and machine.

How the numbers are taken:

- Single-threaded: `OMP_NUM_THREADS`, `OPENBLAS_NUM_THREADS` and `MKL_NUM_THREADS` are set
  to 1 before NumPy is imported, so the figures compare with single-thread peers and
  do not depend on how many cores happen to be free.
- Every case runs in a fresh subprocess, so its peak resident set size (`ru_maxrss`)
  is its own; the RSS after imports and game construction is reported beside it, and
  a `tracemalloc` peak isolates the arrays the solve itself allocates.
- The machine has 2 cores and other work may run at the same time, so each timing is
  repeated and the minimum (the least-disturbed run) is reported with the median; the
  exact solver's table also gives the CPU time of the (single-threaded) process per
  iteration, which competing work disturbs much less than wall time. The load average at
  the start and end of each suite is recorded in its section: above the core count,
  wall times are inflated by up to that ratio.
- The exact solver's "Versus peers" table quotes the issue's reference figures for
  OpenSpiel and MFGLib; the `peers` section measures both peers in the same run as
  crowdsteer, on their own games rebuilt in crowdsteer (`benchmarks/peers/`; optional
  dependencies in `benchmarks/peers/requirements.txt`, `make bench-peers`).
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=SUITES, action="append",
                   help="run only this suite (repeatable); default: all")
    p.add_argument("--quick", action="store_true",
                   help="smoke run in under a minute: small cases, fewer repeats")
    w = p.add_mutually_exclusive_group()
    w.add_argument("--write", dest="write", action="store_true", default=None,
                   help="rewrite the sections in the markdown file (default unless --quick)")
    w.add_argument("--no-write", dest="write", action="store_false",
                   help="only print the sections")
    p.add_argument("--out", type=Path, default=common.REPO / "BENCHMARKS.md",
                   help="markdown file to update (default: BENCHMARKS.md at the repo root)")
    opts = p.parse_args(argv)
    suites = opts.only or list(SUITES)
    write = (not opts.quick) if opts.write is None else opts.write
    python = os.path.relpath(sys.executable, Path.cwd()) if sys.executable else "python"
    script = os.path.relpath(Path(__file__).resolve(), Path.cwd())
    opts.command = shlex.join([python, script, *(sys.argv[1:] if argv is None else argv)])

    started = time.perf_counter()
    for name in suites:
        module = __import__(name)
        body = module.run_suite(opts)
        if body is None:  # the suite skipped itself (e.g. optional peers not installed)
            continue
        if write:
            common.update_section(opts.out, name, body, PREAMBLE)
            print(f"[run] wrote section '{name}' of {opts.out}", flush=True)
        else:
            print("\n" + body, flush=True)
    print(f"[run] done in {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
