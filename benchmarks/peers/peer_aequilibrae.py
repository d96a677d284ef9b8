"""AequilibraE's bi-conjugate Frank-Wolfe on a TNTP network, without a project database.

Setup (as the issue measured it): a pandas ``Graph`` built from the net file's links, the
zones as centroids, ``set_blocked_centroid_flows`` when ``<FIRST THRU NODE>`` says zones
are not through nodes (Anaheim), the generalised cost's flow-independent part (toll and
distance weights) through ``set_fixed_cost``, BPR with the file's ``b`` and ``power``, and
``AEQ_SHOW_PROGRESS=FALSE``. AequilibraE refuses links with a free-flow time of 0
(Chicago Sketch's centroid connectors), so those get 1e-9 minutes: with ``b = 0.15`` and
power 4 their time stays below 1e-6 minutes at any flow in these networks. Its own gap is
not trusted: the caller recomputes the
relative gap from the flows returned here (``link_flows``, in net-file order).
"""

from __future__ import annotations

import os
import time

import numpy as np

os.environ.setdefault("AEQ_SHOW_PROGRESS", "FALSE")


def assign(game, relative_gap: float, max_iter: int = 20_000, cores: int = 1) -> dict:
    """Run AequilibraE's ``bfw`` on a :class:`crowdsteer.games.network.NetworkGame`."""
    import pandas as pd
    from aequilibrae.matrix import AequilibraeMatrix
    from aequilibrae.paths import Graph, TrafficAssignment, TrafficClass

    net = game.net
    E, Z = net.E, net.zones
    links = pd.DataFrame({
        "link_id": np.arange(1, E + 1), "a_node": net.tail + 1, "b_node": net.head + 1,
        "direction": np.ones(E, np.int8),
        "free_flow_time": np.maximum(net.free_flow_time, 1e-9),
        "capacity": net.capacity, "b": net.b, "power": net.power,
        "fixed_cost": game.fixed_cost})
    links["id"] = links["link_id"]
    graph = Graph()
    graph.network = links
    graph.network_ok = True
    graph.status = "OK"
    centroids = np.arange(1, Z + 1, dtype=np.int64)
    graph.prepare_graph(centroids, remove_dead_ends=False)
    graph.set_graph("free_flow_time")
    graph.set_skimming(["free_flow_time"])
    graph.set_blocked_centroid_flows(net.first_thru_node > 1)

    matrix = AequilibraeMatrix()
    matrix.create_empty(zones=Z, matrix_names=["trips"], memory_only=True)
    matrix.index = centroids
    matrix.matrices[:, :, 0] = game.demand
    matrix.computational_view(["trips"])

    cls = TrafficClass("car", graph, matrix)
    if np.any(game.fixed_cost > 0):
        cls.set_fixed_cost("fixed_cost")
    assig = TrafficAssignment()
    assig.set_classes([cls])
    assig.set_vdf("BPR")
    assig.set_vdf_parameters({"alpha": "b", "beta": "power"})
    assig.set_capacity_field("capacity")
    assig.set_time_field("free_flow_time")
    assig.set_algorithm("bfw")
    assig.max_iter = max_iter
    assig.rgap_target = relative_gap
    assig.set_cores(cores)
    start = time.perf_counter()
    assig.execute()
    seconds = time.perf_counter() - start
    res = assig.results()
    flows = res["trips_ab"].reindex(np.arange(1, E + 1)).to_numpy(dtype=float)
    report = assig.report()
    return {"flows": flows, "seconds": seconds, "iterations": int(report["iteration"].max()),
            "reported_gap": float(report["rgap"].iloc[-1])}
