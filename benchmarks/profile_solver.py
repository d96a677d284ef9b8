"""Where an exact-solver iteration spends its time: cProfile of one run, single-threaded.

Not part of ``run.py``; a tool for chasing the numbers in ``BENCHMARKS.md``.

Examples
--------
.venv/bin/python benchmarks/profile_solver.py --n 100 --T 10 --method omd --tau 0
.venv/bin/python benchmarks/profile_solver.py --n 20 --T 4 --method fp --noise 0.1 --kind log
"""

from __future__ import annotations

import common

common.pin_threads()

import argparse  # noqa: E402
import cProfile  # noqa: E402
import pstats  # noqa: E402

from solver import make_game  # noqa: E402

from crowdsteer.learners.exact import ExactConfig, ExactSolver  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100, help="grid side")
    p.add_argument("--T", type=int, default=10, help="horizon")
    p.add_argument("--moves", choices=("local", "any"), default="local")
    p.add_argument("--noise", type=float, default=0.0)
    p.add_argument("--kind", choices=("kernel", "log"), default="kernel")
    p.add_argument("--method", choices=("omd", "fp"), default="omd")
    p.add_argument("--tau", type=float, default=0.0)
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--top", type=int, default=25, help="rows of the profile to print")
    args = p.parse_args()
    game = make_game({"n": args.n, "T": args.T, "moves": args.moves, "noise": args.noise,
                      "kind": args.kind})
    solver = ExactSolver(ExactConfig(method=args.method, temperature=args.tau,
                                     tolerance=1e-300, max_iterations=args.iterations))
    solver.solve(game)  # warm-up
    prof = cProfile.Profile()
    sol = prof.runcall(solver.solve, game)
    print(f"{sol.iterations} iterations, {sol.seconds / sol.iterations * 1e3:.2f} ms each "
          "(under the profiler)")
    pstats.Stats(prof).sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
