"""The ``newton`` method's compiled conjugate-gradient kernels against its NumPy path.

``.venv/bin/python benchmarks/kernels.py`` prints a markdown section (paste it into
BENCHMARKS.md): on the issue's game (100x100, T = 10, local moves, noise 0.1, log
congestion 0.5), at a fixed random policy,

* one conjugate-gradient iteration (a Newton direction of 60 iterations, divided by 60),
  compiled and NumPy, alternated in one process, 7 repeats each (min and median);
* a whole solve to exploitability 1e-4 at ``tau = 0`` with each path (a fresh process
  each: the path is read from ``CROWDSTEER_KERNELS`` when the solver is built).
"""

from __future__ import annotations

import common

common.pin_threads()

import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from convergence import ISSUE, make_game  # noqa: E402


def per_cg_iteration(repeats: int = 7) -> dict:
    from crowdsteer.learners import newton
    from crowdsteer.learners.passes import Passes

    game = make_game(ISSUE)
    p = Passes(game)
    prob = newton._Problem(p, game)
    rng = np.random.default_rng(0)
    pi = p.softmax(2.0 * rng.normal(size=(p.T, p.A, p.S)))
    mu, before = p.forward(pi)
    tau = 2e-3
    Q, _ = p.evaluate(pi, p.table(mu), tau)
    G = prob.project(before[:, None, :] * (Q - tau * np.log(pi)))
    times: dict[str, list[float]] = {"compiled": [], "numpy": []}
    prob.direction(pi, G, mu, before, tau, 60)  # loads the compiled kernels
    for _ in range(repeats):
        for name, exact in (("compiled", False), ("numpy", True)):
            start = time.perf_counter()
            _, _, its = prob.direction(pi, G, mu, before, tau, 60, exact=exact)
            times[name].append((time.perf_counter() - start) / its)
    return {k: sorted(v) for k, v in times.items()}


def whole_solve(path: str) -> dict:
    env = dict(os.environ, CROWDSTEER_KERNELS=path)
    out = subprocess.run([sys.executable, __file__, "--solve"], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _solve_here() -> None:
    from crowdsteer.learners.exact import ExactConfig, ExactSolver

    game = make_game(ISSUE)
    sol = ExactSolver(ExactConfig(temperature=0.0, tolerance=1e-4,
                                  max_iterations=10**5)).solve(game)
    print(json.dumps({"seconds": sol.seconds, "iterations": sol.iterations,
                      "cg": sol.inner_steps, "exploitability": sol.exploitability,
                      "converged": sol.converged}))


def main() -> None:
    info = common.machine_info()
    started = time.perf_counter()
    cg = per_cg_iteration()
    solves = {path: whole_solve(path) for path in ("numba", "numpy")}
    ms = {k: (1e3 * v[0], 1e3 * v[len(v) // 2]) for k, v in cg.items()}
    rows = [["one CG iteration (min / median)", f"{ms['compiled'][0]:.2f} / "
             f"{ms['compiled'][1]:.2f} ms", f"{ms['numpy'][0]:.2f} / {ms['numpy'][1]:.2f} ms",
             f"{ms['numpy'][1] / ms['compiled'][1]:.2f}x"]]
    a, b = solves["numba"], solves["numpy"]
    rows.append(["solve to 1e-4 at tau = 0", f"{a['seconds']:.1f} s ({a['iterations']} it + "
                 f"{a['cg']} CG, {a['exploitability']:.1e})", f"{b['seconds']:.1f} s "
                 f"({b['iterations']} it + {b['cg']} CG, {b['exploitability']:.1e})",
                 f"{b['seconds'] / a['seconds']:.2f}x"])
    print("## Compiled conjugate-gradient kernels (newton)\n")
    print(common.provenance(".venv/bin/python benchmarks/kernels.py", info, started,
                            "CG iterations alternated in one process, 7 repeats; each "
                            "solve in a fresh process"))
    print()
    print(common.md_table(["issue's game (100x100 T10 local)", "compiled (Numba)",
                           "NumPy", "NumPy / compiled"], rows))


if __name__ == "__main__":
    if "--solve" in sys.argv:
        _solve_here()
    else:
        main()
