"""Issue 20, sizes: the routes learner refuses travellers that cannot fit, up front with the
memory estimate (was a MemoryError traceback at 10**12 agents or 1e9 trips). Through the
CLI."""

import pytest

from crowdsteer.guards import ROUTE_BYTES, memory_limit
from tests.test_crash import crowdsteer
from tests.test_redteam_folders import braess, one_line


@pytest.mark.parametrize("agents, trips, shown", [
    (10**12, None, "1,000,000,000,000 agents"),
    (None, 1e11, "one per trip"),  # by default one traveller per trip
])
def test_routes_travellers_that_cannot_fit_are_refused_up_front(tmp_path, agents, trips, shown):
    learner = {"name": "routes", **({"agents": agents} if agents else {})}
    cfg = braess(tmp_path)
    text = cfg.read_text().replace("name: exact", "name: routes" + (
        f"\n  agents: {agents}" if agents else ""))
    cfg.write_text(text)
    if trips:
        trips_file = tmp_path / "trips.tntp"
        trips_file.write_text(trips_file.read_text().replace("150.0", f"{trips:.0f}.0"))
    n = agents or trips
    assert ROUTE_BYTES * n > memory_limit()  # the case is too large here
    line = one_line(crowdsteer("solve", cfg, "--out", tmp_path / "o"))
    assert "learner.agents" in line and "memory" in line and shown in line, (learner, line)
    assert not (tmp_path / "o").exists()


def test_environments_on_a_road_network_are_refused_in_one_line(tmp_path):
    """M11: parallel_env/vector_env of a network config failed at reset with a bare
    ValueError."""
    pytest.importorskip("pettingzoo")
    from crowdsteer import envs
    from crowdsteer.errors import ConfigError

    cfg = braess(tmp_path)
    for make in (envs.parallel_env, envs.vector_env):
        with pytest.raises(ConfigError, match="game.network: .*road network has none"):
            make(str(cfg), agents=10)
