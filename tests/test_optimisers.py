"""Each optimiser beats a fixed budget on functions whose optimum is known."""

import numpy as np
import optuna
import pytest

from crowdsteer.optimisers import OptimiserConfig, distributions, make_sampler, param_names


def branin(w):
    """Branin on [-5, 10] x [0, 15]: global minimum 0.397887 (three minimisers)."""
    x, y = w
    b, c, r, s, t = 5.1 / (4 * np.pi**2), 5 / np.pi, 6, 10, 1 / (8 * np.pi)
    return (y - b * x**2 + c * x - r) ** 2 + s * (1 - t) * np.cos(x) + s


def minimise(f, cfg, n, bounds, seed=0):
    study = optuna.create_study(direction="minimize")
    dists = distributions(n, bounds)
    for i in range(cfg.evaluations):
        study.sampler = make_sampler(cfg, seed, i)
        trial = study.ask(dists)
        study.tell(trial, f(np.array([trial.params[k] for k in param_names(n)])))
    return study.best_value


# (optimiser, evaluations, gap to the optimum it must beat); random is the yardstick.
@pytest.mark.parametrize("name, evaluations, gap", [
    ("bo", 25, 0.05), ("cmaes", 60, 0.1), ("tpe", 60, 0.5), ("random", 60, 3.0)])
def test_quadratic_bowl(name, evaluations, gap):
    """sum (w - c)^2 on [-2, 2]^3, minimum 0 at c."""
    c = np.array([0.7, -1.1, 0.3])
    cfg = OptimiserConfig(name=name, evaluations=evaluations, initial=5)
    best = minimise(lambda w: float(np.sum((w - c) ** 2)), cfg, 3, (-2, 2))
    assert best < gap


@pytest.mark.parametrize("name, evaluations, gap", [("bo", 30, 0.05), ("cmaes", 80, 0.2)])
def test_branin(name, evaluations, gap):
    cfg = OptimiserConfig(name=name, evaluations=evaluations, initial=5)
    study = optuna.create_study(direction="minimize")
    dists = {"w_0": optuna.distributions.FloatDistribution(-5, 10),
             "w_1": optuna.distributions.FloatDistribution(0, 15)}
    for i in range(cfg.evaluations):
        study.sampler = make_sampler(cfg, 0, i)
        t = study.ask(dists)
        study.tell(t, branin((t.params["w_0"], t.params["w_1"])))
    assert study.best_value - 0.397887 < gap


def test_noisy_bo_beats_random_on_average():
    """With noise (sd 0.05) on a 4-D bowl, BO's best true value beats random search's."""
    c = np.array([0.5, -0.5, 0.2, -0.8])
    true = lambda w: float(np.sum((w - c) ** 2))  # noqa: E731
    rng = np.random.default_rng(1)
    results = {}
    for name in ("bo", "random"):
        cfg = OptimiserConfig(name=name, evaluations=30, initial=6)
        study = optuna.create_study(direction="minimize")
        dists = distributions(4, (-1.5, 1.5))
        for i in range(cfg.evaluations):
            study.sampler = make_sampler(cfg, 3, i)
            t = study.ask(dists)
            w = np.array([t.params[k] for k in param_names(4)])
            study.tell(t, true(w) + rng.normal(0, 0.05))
        w_best = np.array([study.best_trial.params[k] for k in param_names(4)])
        results[name] = true(w_best)
    assert results["bo"] < results["random"]


def test_same_seed_same_suggestions():
    cfg = OptimiserConfig(name="bo", evaluations=12, initial=4)
    f = lambda w: float(np.sum(w**2))  # noqa: E731

    def trace():
        study = optuna.create_study(direction="minimize")
        for i in range(cfg.evaluations):
            study.sampler = make_sampler(cfg, 7, i)
            t = study.ask(distributions(2, (-1, 1)))
            study.tell(t, f(np.array(list(t.params.values()))))
        return [t.params for t in study.trials]

    assert trace() == trace()
