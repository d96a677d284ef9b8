"""Planted bugs: does the test suite catch them? (``make mutation``; not part of ``make test``.)

Each mutant is one realistic, single-site bug: a patch ``old -> new`` in one source file
(``old`` must occur exactly once, or the mutant is reported ``stale``: the code moved and
the patch needs updating). For each mutant the repository (the files git tracks, and the
untracked ones it does not ignore) is copied to a temporary folder, the patch applied
there, and the test files named with the mutant run with ``pytest -x``. The mutant is
*caught* when they fail (or time out), *survives* when they pass. The working tree is
never modified.

The mutants cover the Wardrop engines and the network graph (``games/network.py``,
``learners/wardrop.py``), the TNTP reader, the adjoint and the gradient optimiser
(``adjoint.py``, ``metaagent/gradient.py``), the exact solver's ``newton``, warm starts
and fictitious play's stopping rule: the code issue 21 audited. Each names the tests
meant to catch it.

Usage::

    python tools/mutation.py              # all mutants, a table and the catch rate
    python tools/mutation.py --list       # names only
    python tools/mutation.py --only NAME [NAME ...]
    python tools/mutation.py --baseline   # first check the selected tests pass unmutated

Exit status 0 whatever the rate (this measures the tests; it does not gate them), 2 when
a mutant is stale or a baseline fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    """One planted bug."""

    name: str
    path: str
    """Source file, relative to the repository root."""
    old: str
    new: str
    tests: tuple[str, ...]
    """pytest arguments (files or node ids) that should catch it."""
    what: str
    """The bug, in words."""


NET = "src/crowdsteer/games/network.py"
WARDROP = "src/crowdsteer/learners/wardrop.py"
TNTP = "src/crowdsteer/games/tntp.py"
ADJOINT = "src/crowdsteer/adjoint.py"
GRADIENT = "src/crowdsteer/metaagent/gradient.py"
EVALUATION = "src/crowdsteer/metaagent/evaluation.py"
NEWTON = "src/crowdsteer/learners/newton.py"
FP = "src/crowdsteer/learners/sampled_fp.py"
T_NET = "tests/test_network.py"
T_SOLVERS = "tests/test_network_solvers.py"
T_NETGRAD = "tests/test_network_gradients.py"
T_TOLLS = "tests/test_network_tolls.py"
T_ADJ = "tests/test_adjoint.py"
T_WARM = "tests/test_warm_starts.py"
T_FP = "tests/test_fictitious_play_contract.py"
T_MODEL_FREE = "tests/test_model_free.py"
T_METHODS = "tests/test_solver_methods.py"
T_KERNELS = "tests/test_kernels.py"

MUTANTS: tuple[Mutant, ...] = (
    # --- the network graph and the Wardrop engines
    Mutant("sptt_all_pairs", NET,
           "sptt = float(self.od[has_trips] @ dist[:, :self.Z][has_trips])",
           "sptt = float(np.sum(self.od * dist[:, :self.Z]))",
           (T_SOLVERS,), "SPTT summed over every pair: 0 x inf = NaN for an unreachable "
           "pair without trips (the real bug of issue 21)"),
    Mutant("first_thru_off_by_one_low", TNTP,
           "return self.ids < self.first_thru_node",
           "return self.ids < self.first_thru_node - 1",
           (T_NET,), "the zone just below <FIRST THRU NODE> is passed through"),
    Mutant("first_thru_off_by_one_high", TNTP,
           "return self.ids < self.first_thru_node",
           "return self.ids <= self.first_thru_node",
           (T_NET,), "the zone <FIRST THRU NODE> itself is never passed through"),
    Mutant("bpr_second_derivative_exponent", "src/crowdsteer/games/base.py",
           "    e = p - order\n",
           "    e = p - 1\n",
           (T_SOLVERS,), "t'' of BPR with the exponent of t' (the system optimum's slope)"),
    Mutant("bpr_derivative_capacity", NET,
           "return (n.free_flow_time * n.b / n.capacity ** order\n",
           "return (n.free_flow_time * n.b\n",
           (T_SOLVERS, T_NETGRAD), "t' of BPR missing a 1 / capacity"),
    Mutant("parallel_links_dearest", NET,
           "order = np.lexsort((cost, self.pair_of))",
           "order = np.lexsort((-cost, self.pair_of))",
           (T_NET,), "parallel links: the dearest, not the cheapest, carries the arc"),
    Mutant("bfw_gap_in_travel_time", WARDROP,
           "        y, sptt, _ = graph.all_or_nothing(c)\n"
           "        gap = _certify(float(c @ x), sptt, k, history, progress)",
           "        y, _, _ = graph.all_or_nothing(c)\n"
           "        t = game.travel_time(x)\n"
           "        _, sptt, _ = graph.all_or_nothing(t)\n"
           "        gap = _certify(float(t @ x), sptt, k, history, progress)",
           (T_SOLVERS,), "Frank-Wolfe certifies its gap in travel time, not the "
           "generalised (tolled, or marginal) cost"),
    Mutant("gp_gap_in_travel_time", WARDROP,
           "        gap = _certify(float(c @ x), float(demand @ sp), k, history, progress)",
           "        t = game.travel_time(x)\n"
           "        gap = _certify(float(t @ x), float(demand @ graph.distances(t)[od_rows, "
           "od_dest]), k, history, progress)",
           (T_SOLVERS,), "gradient projection certifies its gap in travel time"),
    Mutant("system_optimum_no_second_order", WARDROP,
           "        dc = 2 * dc + x * game.travel_time_derivative(x, order=2)",
           "        dc = 2 * dc",
           (T_SOLVERS, T_TOLLS), "the marginal cost's slope without x t''"),
    Mutant("line_search_full_step", WARDROP,
           "    if g1 <= 0:\n        return 1.0",
           "    if g1 >= g0:\n        return 1.0",
           (T_SOLVERS, T_NET), "the line search always takes the full step"),
    Mutant("bfw_conjugate_sign", WARDROP,
           "        rhs = -np.array([u @ (h * p1), u @ (h * p2)])",
           "        rhs = np.array([u @ (h * p1), u @ (h * p2)])",
           (T_SOLVERS, T_NET), "bi-conjugate Frank-Wolfe's conjugacy equations with the "
           "wrong sign"),
    Mutant("gp_no_new_paths", WARDROP,
           "new = np.flatnonzero(sp < best - 1e-12",
           "new = np.flatnonzero(sp > best - 1e-12",
           (T_SOLVERS, T_NET), "gradient projection never adds a shortest path (column "
           "generation off)"),
    Mutant("vjp_keeps_frank_wolfe", WARDROP,
           "    if solution.paths is None or solution.relative_gap > VJP_GAP * 100:",
           "    if solution.relative_gap > VJP_GAP * 100:",
           (T_NETGRAD,), "equilibrium_vjp does not re-solve a Frank-Wolfe solution (no "
           "paths)"),
    Mutant("vjp_sign", WARDROP,
           "    return -_g(paths, b, full), residual",
           "    return _g(paths, b, full), residual",
           (T_NETGRAD,), "the network hypergradient with the wrong sign"),
    Mutant("vjp_flow_not_per_traveller", WARDROP,
           "g_x = np.asarray(g_mu, dtype=float).reshape(-1) / game.D",
           "g_x = np.asarray(g_mu, dtype=float).reshape(-1)",
           (T_NETGRAD,), "dJ/dmu not divided by the demand (x = D mu)"),
    # --- the TNTP reader
    Mutant("trips_overwrite", TNTP,
           "np.add.at(demand, (np.searchsorted(zone_ids, o_arr), "
           "np.searchsorted(zone_ids, d_arr)), a)",
           "demand[np.searchsorted(zone_ids, o_arr), np.searchsorted(zone_ids, d_arr)] = a",
           (T_SOLVERS, T_NET), "a repeated trips entry overwrites instead of summing"),
    # --- the adjoint and the gradient optimiser
    Mutant("adjoint_absolute_residual", ADJOINT,
           "    residual = float(np.linalg.norm(matvec(lam) - g)) / scale\n",
           "    residual = float(np.linalg.norm(matvec(lam) - g))\n",
           (T_ADJ + "::test_the_adjoint_refuses_a_solve_that_did_not_converge",),
           "the adjoint's residual check is absolute"),
    Mutant("congestion_vjp_transposed", ADJOINT,
           "        o_bar = -(g @ game.G) * game.b",
           "        o_bar = -(g @ game.G.T) * game.b",
           (T_ADJ + "::test_gradient_matches_central_differences",),
           "the congestion game's payoff VJP with the incidence transposed"),
    Mutant("gradient_sign_for_maximised", GRADIENT,
           "        return sign * value, sign * grad\n",
           "        return sign * value, grad\n",
           (T_ADJ + "::test_gradient_optimiser_climbs_a_maximised_welfare_to_the_social_optimum",
            T_ADJ + "::test_gradient_optimiser_finds_the_braess_toll"),
           "the gradient optimiser ignores the direction of a maximised J"),
    Mutant("warm_start_farthest", EVALUATION,
           "src = ok[int(np.argmin(np.sum((ws - np.asarray(w, dtype=float)) ** 2, axis=1)))]",
           "src = ok[int(np.argmax(np.sum((ws - np.asarray(w, dtype=float)) ** 2, axis=1)))]",
           (T_WARM,), "warm starts from the farthest earlier w"),
    Mutant("warm_start_failed_not_skipped", EVALUATION,
           'ok = [t for t in sources if not t.user_attrs.get("failed") and t.value is not None]',
           "ok = [t for t in sources if t.value is not None]",
           (T_WARM,), "a failed evaluation can be a warm start's source"),
    Mutant("warm_start_chain_reversed", EVALUATION,
           "    chain.reverse()\n    return src.number, chain",
           "    return src.number, chain",
           (T_WARM,), "the chain of warm starts newest first"),
    Mutant("evict_newest", EVALUATION,
           "            self._bytes -= _size(self._items.pop(next(iter(self._items))))",
           "            self._bytes -= _size(self._items.pop(next(reversed(self._items))))",
           (T_WARM,), "warm starts evict the newest solution, not the oldest"),
    Mutant("setup_cache_fifo", EVALUATION,
           "    s, warm = _CACHE[key] = _CACHE.pop(key)  # served now: the last to go",
           "    s, warm = _CACHE[key]",
           (T_WARM,), "the setup cache evicts the first built, even if just served"),
    # --- newton (the exact solver)
    Mutant("warm_restart_ignored", NEWTON,
           "tau = max(goal, min(tau, max(4.0 * init.stage_temperature, WARM_RESTART)))",
           "tau = max(goal, min(tau, 4.0 * init.stage_temperature))",
           (T_METHODS,), "a warm start resumes at its tiny stage (WARM_RESTART ignored)"),
    Mutant("proximal_reference_frozen", NEWTON,
           "        if proximal:\n            logref = logp  # one Newton step per proximal "
           "step",
           "        if proximal:\n            pass",
           (T_KERNELS + "::test_proximal_stage_reaches_tight_tolerances_at_temperature_0",),
           "proximal steps keep their first reference policy"),
    # --- fictitious play's stopping rule
    Mutant("fp_stops_on_estimate", FP,
           "            history.append(br.gap)\n",
           "            history.append(br.gap)\n"
           "            if k > cfg.check_every and br.gap <= tolerance:\n"
           "                break\n",
           (T_FP, T_MODEL_FREE + "::test_a_learner_that_says_it_converged_is_within_its_"
            "tolerance"), "fictitious play stops on its own sampled estimate"),
    Mutant("fp_returns_last_certified", FP,
           "if not converged and best is not None and best[0] < expl:",
           "if not converged and best is not None and best[0] > expl:",
           (T_FP,), "fictitious play returns the last certified policy, not the best"),
    Mutant("fp_patience_early", FP,
           "elif cfg.patience is not None and k - best[1] >= cfg.patience:",
           "elif cfg.patience is not None and k - best[1] >= cfg.patience // 2:",
           (T_FP,), "fictitious play gives up after half its patience"),
)


def _files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return [f for f in out.splitlines() if (ROOT / f).is_file()]


def _copy(dest: Path) -> None:
    for f in _files():
        target = dest / f
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, target)


def _pytest(tree: Path, tests: tuple[str, ...], timeout: float) -> tuple[str, float]:
    env = {**os.environ, "PYTHONPATH": f"{tree / 'src'}{os.pathsep}{tree}"}
    start = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                            "-m", "not slow", *tests], cwd=tree, env=env, capture_output=True,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - start
    status = {0: "passed", 1: "failed"}.get(r.returncode, f"error {r.returncode}")
    return status, time.perf_counter() - start


def _interrupted(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # so that the temporary copy is removed


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _interrupted)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run these mutants only")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--baseline", action="store_true",
                    help="first check that the selected tests pass on the unmutated code")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per mutant")
    args = ap.parse_args(argv)
    known = {m.name: m for m in MUTANTS}
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:34s} {m.path}: {m.what}")
        return 0
    unknown = sorted(set(args.only or ()) - set(known))
    if unknown:
        print(f"--only: unknown mutant(s) {', '.join(unknown)}; see --list", file=sys.stderr)
        return 2
    chosen = [known[n] for n in args.only] if args.only else list(MUTANTS)
    stale = [m.name for m in chosen if (ROOT / m.path).read_text().count(m.old) != 1]
    if stale:
        print(f"stale mutant(s) (their code is not found exactly once): {', '.join(stale)}",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="crowdsteer-mutation-") as tmp:
        tree = Path(tmp)
        _copy(tree)
        if args.baseline:
            for tests in sorted({m.tests for m in chosen}):
                status, secs = _pytest(tree, tests, args.timeout)
                print(f"baseline {' '.join(tests)}: {status} ({secs:.0f} s)", flush=True)
                if status != "passed":
                    return 2
        print("| mutant | file | bug | tests | result | seconds |")
        print("| --- | --- | --- | --- | --- | --- |")
        caught = 0
        for m in chosen:
            target = tree / m.path
            original = target.read_text()
            target.write_text(original.replace(m.old, m.new))
            try:
                status, secs = _pytest(tree, m.tests, args.timeout)
            finally:
                target.write_text(original)
            hit = status != "passed"
            caught += hit
            result = "caught" if hit else "**survived**"
            if status not in ("passed", "failed"):
                result += f" ({status})"
            tests = ", ".join(t.replace("tests/", "") for t in m.tests)
            print(f"| {m.name} | {m.path.replace('src/crowdsteer/', '')} | {m.what} | {tests} "
                  f"| {result} | {secs:.0f} |", flush=True)
    print(f"\ncaught {caught} of {len(chosen)} mutants ({100 * caught / len(chosen):.0f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
