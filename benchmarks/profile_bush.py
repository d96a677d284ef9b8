"""Where an iteration of the bush engine spends its time: the certificate (Dijkstra from
every origin), the sweep with bush updates and the equilibration-only sweeps, in CPU
seconds of the process (less inflated by a loaded machine than wall time).

Run: ``.venv/bin/python benchmarks/profile_bush.py BerlinCenter 6`` (network name in
``$CROWDSTEER_TNTP`` or ``../shared/data/tntp``, iterations).
"""

from __future__ import annotations

import sys
import time

from network import load  # noqa: I001 - first: it pins the threads before NumPy loads

import numpy as np

from crowdsteer.learners import bush as B


def main(name: str, iterations: int) -> None:
    game, _ = load(name)
    net = B.Network(game)
    out_ptr, out_link, in_ptr, in_link = net.stars
    Zo, E = net.sources.shape[0], net.tail.shape[0]
    flows, in_bush = np.zeros((Zo, E)), np.zeros((Zo, E), np.bool_)
    c, _ = net.costs(np.zeros(E))
    B._load_trees(net.sources, net.od, out_ptr, out_link, net.tail, net.head, c, flows,
                  in_bush, np.empty((Zo, net.od.shape[1])))
    x, eps = flows.sum(axis=0), B.FLOW_EPS * net.od.sum(axis=1)
    args = (out_ptr, out_link, in_ptr, in_link, net.tail, net.head, *net.bpr, eps)
    for k in range(iterations):
        c, dc = net.costs(x)
        t = time.process_time()
        gap = net.relative_gap(x)
        certificate = time.process_time() - t
        thresh = 0.01 * min(gap, 1e-3)
        t = time.process_time()
        B._sweep(net.sources, in_bush, flows, x, c, dc, *args, True, B.INNER_PASSES, thresh)
        update = time.process_time() - t
        t = time.process_time()
        for _ in range(B.extra_sweeps(gap)):
            B._sweep(net.sources, in_bush, flows, x, c, dc, *args, False, 1, thresh)
        extra = time.process_time() - t
        x = flows.sum(axis=0)
        print(f"{k + 1}: gap {gap:.2e}; CPU s: certificate {certificate:.2f}, update sweep "
              f"{update:.2f}, {B.extra_sweeps(gap)} equilibration sweeps {extra:.2f}",
              flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
