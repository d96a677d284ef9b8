"""Ray for real on this machine: one local instance per test session, and a two-node
``ray.cluster_utils.Cluster``."""

import pytest

import crowdsteer
from tests.test_executors import RUN, trace

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_gives_the_serial_results(tmp_path, local_ray):
    crowdsteer.run(RUN, out=tmp_path / "serial")
    crowdsteer.run({**RUN, "executor": {"name": "ray"}}, out=tmp_path / "ray")
    assert trace(tmp_path / "serial") == trace(tmp_path / "ray")


def test_ray_retries_a_failing_task(tmp_path, local_ray):
    from crowdsteer.executors import Ray
    from tests.test_executors import always_fails, flaky

    ex = Ray()
    assert ex.map(flaky, [(str(tmp_path / "m0"), 1), (str(tmp_path / "m1"), 2)]) == [2, 4]
    assert all(isinstance(r, ValueError) for r in ex.map(always_fails, [1]))


@pytest.mark.slow
def test_two_node_cluster(tmp_path):
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        cfg = {**RUN, "executor": {"name": "ray", "address": cluster.address}}
        crowdsteer.run(cfg, out=tmp_path / "cluster")
        crowdsteer.run(RUN, out=tmp_path / "serial")
        assert trace(tmp_path / "cluster") == trace(tmp_path / "serial")
        assert len(ray.nodes()) == 2
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.mark.slow
def test_ray_stops_a_task_past_its_timeout(local_ray):
    """The clock starts at submission (at most as many tasks in flight as CPUs), so the
    timeout leaves room for Ray to start a worker."""
    from crowdsteer.executors import Ray, TaskTimeout
    from tests.test_executors import sleeps

    out = Ray().map(sleeps, [0.1, 600, 0.2], timeout=15)
    assert out[0] == 0.1 and out[2] == 0.2
    assert isinstance(out[1], TaskTimeout) and str(out[1]) == "timed out after 15 s"
