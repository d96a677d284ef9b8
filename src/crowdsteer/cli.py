"""The ``crowdsteer`` command line: parse, load config, call the library, print."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Iterator

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from crowdsteer.errors import CrowdsteerError, CrowdsteerWarning
from crowdsteer.progress import number, plural

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="crowdsteer: steer self-interested learning agents to efficient equilibria.\n\n"
    "Examples:\n\n"
    "  crowdsteer init my.yaml\n\n"
    "  crowdsteer solve examples/solve.yaml --out runs/solve\n\n"
    "  crowdsteer run examples/oneshot.yaml --out runs/oneshot\n\n"
    "  crowdsteer report runs/oneshot",
)
console = Console(stderr=True)
_show_warning = warnings.showwarning


def _one_line_warning(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """A crowdsteer warning as one line on stderr, like errors; others as Python shows them."""
    if issubclass(category, CrowdsteerWarning):
        console.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)
    else:
        _show_warning(message, category, *args, **kwargs)


warnings.showwarning = _one_line_warning


def _version(value: bool) -> None:
    if value:
        from crowdsteer import __version__

        typer.echo(f"crowdsteer {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="Print the version and exit.")] = False) -> None:
    """crowdsteer: steer self-interested learning agents to efficient equilibria."""


def fail(message: str) -> None:
    """Print ``error: MESSAGE`` as one line (user text verbatim: a ``[...]`` in a path or a
    value is not rich markup) and exit with code 2."""
    console.print(Text.assemble(("error:", "red"), " ", message), highlight=False,
                  soft_wrap=True)
    raise typer.Exit(2)


@contextmanager
def clean_errors() -> Iterator[None]:
    """Turn library errors into one line and exit code 2; never a traceback."""
    try:
        yield
    except CrowdsteerError as exc:
        code = getattr(exc, "exit_code", 2)
        if code == 2:
            fail(str(exc))
        console.print(Text.assemble(("error:", "red"), " ", str(exc)), highlight=False,
                      soft_wrap=True)
        raise typer.Exit(code) from None
    except KeyboardInterrupt:
        console.print("interrupted; what was finished is saved")
        raise typer.Exit(130) from None
    except OSError as exc:
        fail(f"{getattr(exc, 'filename', '') or ''}: {exc.strerror or exc}".lstrip(": "))
    except MemoryError:  # past every estimate (guards.py): still one line
        fail("out of memory: the problem is larger than this machine (or ulimit -v) allows; "
             "make it smaller (grid, horizon, agents, network)")
    except UnicodeDecodeError as exc:  # a file that should be text is not (UTF-8)
        fail(f"a file is not UTF-8 text ({exc.reason} at byte {exc.start})")


@contextmanager
def progress_bar(label: str, total: int, metric: str, lines: Any = None
                 ) -> Iterator[Callable[[int, float], None]]:
    """A rich progress bar on a terminal (stderr); yields a callback ``(iteration, value)``.
    ``lines`` (a :class:`crowdsteer.progress.Lines`) also gets every update: it prints
    plain lines when stdout is not a terminal."""
    quiet = not sys.stderr.isatty()
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"),
                  TextColumn(f"{metric} {{task.fields[value]}}"), TimeElapsedColumn(),
                  console=console, disable=quiet, transient=False) as bar:
        task = bar.add_task(escape(label), total=total, value="-")

        def update(k: int, value: float) -> None:
            bar.update(task, completed=k, value=f"{value:.3g}")
            if lines is not None:
                lines(k, value)

        yield update


def progress_lines(label: str, log: Callable[[str], None] | None = None,
                   **kwargs: Any) -> Any:
    """Plain progress lines on stdout (and to ``log``) when stdout is not a terminal, where
    a progress bar shows nothing; ``None`` on a terminal."""
    from crowdsteer.progress import Lines

    if sys.stdout.isatty():
        return None

    def emit(line: str) -> None:
        typer.echo(line)
        if log is not None:
            log(line)

    return Lines(label, emit, **kwargs)


OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Run folder to write.")]
ForceOpt = Annotated[bool, typer.Option(
    "--force", help="Replace the run in a folder holding one (it is moved into previous/).")]


@app.command()
def solve(
    config: Annotated[Path, typer.Argument(help="YAML config with sections seed, game, learner.")],
    out: OutOpt = Path("runs/solve"),
    force: ForceOpt = False,
) -> None:
    """Solve a game: write summary.json, mu.npy, pi.npy and mu.png to --out.

    Example: crowdsteer solve examples/solve.yaml --out runs/solve
    """
    from crowdsteer import rundir
    from crowdsteer import solving as solve_mod
    from crowdsteer.config import load_config

    with clean_errors(), rundir.claimed(out):  # a live run's folder is never moved aside
        cfg = load_config(config)
        network = getattr(cfg["game"], "network", None) is not None  # a road network
        if cfg["finite_n"] is not None and network:
            fail("finite_n: the finite-N study simulates agents moving between states; a road "
                 "network has none (its travellers: learner: {name: routes, agents: N})")
        out = rundir.prepare(out, force=force, resumable=False)
        learner = cfg["learner"]
        metric = "exploitability" if learner.name == "exact" else "change"
        target = getattr(learner, "tolerance", None)
        if learner.name == "exact" and network:
            # road networks: the engines report (and stop at) the relative gap
            from crowdsteer.games.network import DEFAULT_RELATIVE_GAP

            metric, target = "relative gap", learner.relative_gap or DEFAULT_RELATIVE_GAP
        lines = progress_lines(f"solving ({learner.name})", metric=metric, every=1,
                               target=target)
        with progress_bar(f"solving ({learner.name})", learner.max_iterations, metric,
                          lines) as bar:
            result = solve_mod.solve(cfg, progress=bar)
        s = result.solution
        status = "converged" if s.converged else "did NOT converge (max_iterations reached)"
        if not s.converged and s.estimate is not None and getattr(learner, "temperature", 1) == 0:
            status += (" - at temperature 0 the model-free learners approach a mixed "
                       "equilibrium slowly: raise max_iterations or the temperature")
        own = "" if s.estimate is None else f"; the learners' own estimate {s.estimate:.3g}"
        network = (f"relative gap {s.relative_gap:.3g}, total travel time "
                   f"{s.total_travel_time:.8g}; " if hasattr(s, "relative_gap") else "")
        typer.echo(f"{status} in {plural(s.iterations, 'iteration')}, {s.seconds:.2f} s; "
                   f"{network}exploitability {s.exploitability:.3g} (certified with the "
                   f"model{own}), welfare {number(result.welfare)}")
        written = solve_mod.write(result, out)  # after the numbers: drawing may take a while
        typer.echo(f"wrote {out}/" + ", ".join(written))
        if cfg["finite_n"] is not None:
            _finite_n(cfg, out)


def _finite_n(cfg: Any, out: Path) -> None:
    """The finite-N study: a table, finite_n.json and finite_n.png in the run folder."""
    from dataclasses import asdict

    import numpy as np
    from rich.table import Table

    from crowdsteer import rundir
    from crowdsteer.finite_n import study
    from crowdsteer.report.plots import line_plot

    rows = study(cfg)
    table = Table("N", "policy: TV to mu*", "learner: TV (agents)", "learner: TV (mean field)",
                  "learner: exploitability", "seconds", title="finite N against the mean field")
    for r in rows:
        table.add_row(str(r.agents), f"{r.policy_tv:.3g}", f"{r.learner_tv_sample:.3g}",
                      f"{r.learner_tv_mean_field:.3g}", f"{r.learner_exploitability:.3g}",
                      f"{r.seconds:.2f}")
    Console().print(table)
    rundir.write_json(out / "finite_n.json", {"rows": [asdict(r) for r in rows]})
    N = np.array([r.agents for r in rows], float)
    ref = rows[0].policy_tv * np.sqrt(N[0] / N)
    line_plot([("N agents playing the mean-field policy", N, np.array([r.policy_tv for r in rows])),
               ("N learning agents", N, np.array([r.learner_tv_sample for r in rows])),
               ("1/sqrt(N)", N, ref)], out / "finite_n.png", "N", "TV distance to mu*",
              title="finite N approaches the mean field", logy=True)
    typer.echo(f"wrote {out}/finite_n.json, finite_n.png")


@app.command()
def check(
    configs: Annotated[list[Path], typer.Argument(help="Configs whose games to check.")],
    samples: Annotated[int, typer.Option(min=1, help="Random w per game.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the random w (a whole number >= 0).")] = 0,
) -> None:
    """Check the paper's theory numerically: Lemma 1 (the modified game is still a potential
    game) and the continuity of the equilibrium in w; prints the largest violations.

    Example: crowdsteer check examples/*.yaml
    """
    from rich.table import Table

    from crowdsteer.theory import check as check_theory

    with clean_errors():
        if seed < 0:
            fail(f"--seed: must be a whole number >= 0, got {seed}")
        table = Table("config", "game", "modifier", "Lemma 1: largest gap", "reward scale",
                      "Lipschitz estimate", "continuous", "verdict")
        bad = 0
        unchecked = []
        for path in configs:
            r = check_theory(path, samples, seed)
            lemma_ok = r.lemma1 is None or r.lemma1 <= 1e-6 * max(1.0, r.lemma1_scale)
            bad += not (lemma_ok and r.shrinks)
            failed = [what for what, ok in (("Lemma 1", lemma_ok), ("continuity", r.shrinks))
                      if not ok]
            verdict = (f"[red]FAIL: {', '.join(failed)}[/red]" if failed else
                       "pass" if r.lemma1 is not None else "pass (continuity only *)")
            if r.lemma1 is None:
                unchecked.append(str(path))
            table.add_row(Text(str(path)), Text(r.game), Text(r.modifier),
                          "not checked *" if r.lemma1 is None else f"{r.lemma1:.2e}",
                          "-" if r.lemma1 is None else f"{r.lemma1_scale:.3g}",
                          f"{r.lipschitz:.3g}",
                          "yes" if r.shrinks else "[red]NO[/red]", verdict)
        # the terminal's width on a terminal; piped or redirected, whole columns
        out = Console() if sys.stdout.isatty() else Console(width=400, soft_wrap=True)
        out.print(table)
        if unchecked:
            out.print(Text(f"* {', '.join(unchecked)}: no potential in the "
                           "population form Lemma 1 is checked in (Phi_t(mu) whose gradient is "
                           "the landing reward). A road network's Wardrop equilibrium "
                           "minimises Beckmann's potential over path flows instead; tolls add "
                           "sum_e toll_e x_e to it, a linear term, so the tolled game keeps a "
                           "potential by construction; only continuity is checked."),
                      soft_wrap=True)
        typer.echo(f"{len(configs) - bad} of {len(configs)} passed")
        if bad:
            raise typer.Exit(1)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(ctx: typer.Context) -> None:
    """Run the benchmarks of a crowdsteer checkout (benchmarks/run.py; options pass through:
    --only SUITE, --quick); results go to BENCHMARKS.md.

    Example: crowdsteer bench --only solver --quick
    """
    import subprocess

    script = Path("benchmarks/run.py")
    if not script.is_file():
        fail("benchmarks/run.py not found: run this from a crowdsteer checkout")
    raise typer.Exit(subprocess.call([sys.executable, str(script), *ctx.args]))


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the starter config.")] = Path(
        "crowdsteer.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter config.

    Example: crowdsteer init my.yaml && crowdsteer run my.yaml --out runs/my
    """
    from importlib.resources import files

    from crowdsteer.rundir import atomic_write

    with clean_errors():
        if path.is_dir():
            fail(f"{path} is a folder; give the path of the config file to write, e.g. "
                 f"{path / 'crowdsteer.yaml'}")
        if path.exists() and not force:
            fail(f"{path} exists; pass --force to overwrite it")
        if not path.parent.is_dir():
            fail(f"{path.parent}: no such folder; create it first or choose another path")
        text = files("crowdsteer").joinpath("starter.yaml").read_text().replace(
            "CONFIG_PATH", str(path))
        try:
            if path.exists() and not path.is_file():  # a device such as /dev/full
                path.write_text(text)
            else:  # a full disk or a kill never leaves half a config (or loses the old one)
                atomic_write(path, text.encode())  # the mode of an ordinary new file
        except OSError as exc:
            fail(f"{path}: cannot write it ({exc.strerror or exc})")
    typer.echo(f"wrote {path}; run it with: crowdsteer run {path} --out runs/starter")


def main(argv: list[str] | None = None) -> Any:
    return app(argv)


if __name__ == "__main__":  # pragma: no cover
    main()


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="YAML config: seed, game, learner, modifier, "
                                           "objective, optimiser.")],
    out: OutOpt = Path("runs/run"),
    resume: Annotated[bool, typer.Option("--resume", help="Continue a killed run in --out.")] = False,
    force: ForceOpt = False,
    executor: Annotated[str | None, typer.Option(
        "--executor", help="Where evaluations run: serial, local (processes) or ray.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Processes (local) or CPUs (ray).")] = None,
    address: Annotated[str | None, typer.Option(
        help="Ray cluster address (auto, ray://host:port); needs --executor ray (or "
             "executor: {name: ray} in the config).")] = None,
) -> None:
    """Run the meta-agent: learn the reward modifier that steers the agents.

    Writes study.db and evaluations.csv as it goes; result.json, best_mu.npy,
    config.yaml and report.html at the end.

    Example: crowdsteer run examples/oneshot.yaml --out runs/oneshot
    """
    from crowdsteer import metaagent
    from crowdsteer.config import load_config

    with clean_errors():
        cfg = load_config(config, required=("game", "modifier"))
        if executor or workers or address:
            from crowdsteer.config import validate
            from crowdsteer.executors import ExecutorConfig

            base = cfg["executor"].model_dump() if cfg["executor"] else {}
            over = {k: v for k, v in (("name", executor), ("workers", workers),
                                      ("address", address)) if v is not None}
            name = over.get("name", base.get("name", "serial"))
            if address is not None and name != "ray":
                fail(f"--address: only the ray executor connects to a cluster; add --executor "
                     f"ray (the executor now is {name})")
            cfg = cfg.replace("executor", validate(ExecutorConfig, {**base, **over}, "--executor"))
        from crowdsteer.optimisers import OptimiserConfig

        opt = cfg["optimiser"] or OptimiserConfig()
        def bar_log(message: str) -> None:  # what the run decides: stdout, like the results
            typer.echo(message)

        from crowdsteer.metaagent.runner import note

        lines = progress_lines("evaluations", lambda line: note(out, None, line),
                               total=1 + opt.evaluations)
        with progress_bar("meta-agent", 1 + opt.evaluations, "best J", lines) as bar:
            result = metaagent.run(cfg, out, resume=resume, force=force, log=bar_log,
                                   progress=lambda done, total, best: bar(done, best if best
                                                                          is not None else float("nan")))
        b, o = result.baseline, result.best
        typer.echo(f"baseline (w = 0): J = {number(b.objective)}  exploitability "
                   f"{b.exploitability:.2g}")
        session = (f" ({result.session_seconds:.1f} s in this session)"
                   if resume and result.session_seconds < result.seconds else "")
        typer.echo(f"best (trial {result.best_trial}): J = {number(o.objective)}  "
                   f"exploitability {o.exploitability:.2g}  after {result.evaluations} "
                   f"evaluations, {result.seconds:.1f} s{session}")
        for label, v in (("baseline", result.baseline_validation),
                         ("best", result.best_validation)):
            if v is not None and v.get("mean") is not None:
                typer.echo(f"{label} on {len(v['seeds'])} fresh seeds: J = {v['mean']:.6g} "
                           f"+- {v['std']:.2g}")
        mf = result.best_mean_field
        if mf is not None and mf.get("objective") is not None:
            typer.echo(f"best w at the exact equilibrium (mean field): J = {mf['objective']:.6g}"
                       f"  exploitability {mf['exploitability']:.2g}")
        if result.iid_sample_kl is not None:
            iid = result.iid_sample_kl
            typer.echo(f"KL of {iid['agents']} agents drawn iid from the target: "
                       f"{iid['mean']:.3g} +- {iid['std']:.2g} nats (not a floor)")
        if result.converged_evaluations is not None:
            typer.echo(f"{result.converged_evaluations} of {result.evaluations} evaluations "
                       "converged (certified exploitability at most the learner's tolerance)"
                       + ("; only those could be the best" if result.require_convergence
                          else "; require_convergence is off: all could be the best"))
        if result.network is not None and "gap_closed" in result.network:  # road networks
            nw = result.network
            typer.echo(f"total travel time {nw['tstt_baseline']:.8g} without tolls, "
                       f"{nw['tstt_best']:.8g} with the best, {nw['tstt_system_optimum']:.8g} "
                       f"at the system optimum: {100 * nw['gap_closed']:.2f}% of the UE-to-SO "
                       "gap closed")
        typer.echo(f"optimiser: {result.optimiser}; inner iterations: {result.inner_iterations}")
        typer.echo(f"wrote {out}/result.json, evaluations.csv, best_mu.npy, report.html")


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="A run folder written by `run`.")]) -> None:
    """(Re)write run_dir/report.html from the saved results.

    Example: crowdsteer report runs/oneshot
    """
    from crowdsteer.report.html import read_run, write_report

    with clean_errors():
        if not (run_dir / "result.json").is_file():
            fail(f"{run_dir}: no result.json here; run `crowdsteer run` first")
        path = write_report(run_dir)
        for problem in read_run(run_dir).problems:
            console.print(Text(f"left out {problem}"), highlight=False, soft_wrap=True)
        typer.echo(f"wrote {path}")


@app.command()
def reproduce(
    configs: Annotated[list[Path] | None, typer.Argument(help="Example configs (default: "
                                                         "examples/oneshot.yaml examples/dynamic.yaml).")] = None,
    out: OutOpt = Path("runs/reproduce"),
    runs: Annotated[int, typer.Option(min=1, help="Independent runs per example.")] = 4,
    simulations: Annotated[int, typer.Option(min=1, help="Simulations J is averaged over "
                                             "per evaluation.")] = 100,
    evaluations: Annotated[int | None, typer.Option(min=1, help="Override the evaluations "
                                                    "of each run.")] = None,
    force: ForceOpt = False,
) -> None:
    """Reproduce the paper's experiments: 4 runs per example, J averaged over 100 simulations
    per evaluation; writes out/NAME.png (mean curve with its spread) and out/summary.json.

    Example: crowdsteer reproduce --runs 4 --simulations 100
    """
    from crowdsteer.reproduce import reproduce as reproduce_all

    configs = configs or [Path("examples/oneshot.yaml"), Path("examples/dynamic.yaml")]
    with clean_errors():
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                      TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                      console=console, disable=not sys.stderr.isatty()) as bar:
            tasks: dict[tuple[str, int], Any] = {}

            def update(name: str, k: int, done: int, total: int, best: float | None) -> None:
                if (name, k) not in tasks:
                    tasks[(name, k)] = bar.add_task(escape(f"{name} run {k}"), total=total)
                bar.update(tasks[(name, k)], completed=done)

            results = reproduce_all(configs, out, runs, simulations, evaluations, update, force)
        for r in results:
            s = r.summary()
            typer.echo(f"{r.name}: J from {s['baseline_mean']:.4g} (agents alone) to "
                       f"{s['best_mean']:.4g} (best, mean of {s['runs']} runs; range "
                       f"{s['best_min']:.4g}..{s['best_max']:.4g}); plot {r.plot}")
