"""TNTP files as they come (issue 18's arbitrary node ids, issue 20's hostile TNTP inputs),
through the CLI: every bad file is refused with one line naming the file, the line or
field and what is allowed (exit 2); odd but valid files are read.

References: Braess's network (the closed form: all trips on s -> v -> w -> t, cost 2 per
trip, links s->v and w->t carrying the flow x with t = x, s->w and v->t costing 1, v->w 0)
written with arbitrary node ids; the same with every link doubled in parallel
(tolls on a listed pair charge both).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from crowdsteer import cli as cli_mod
from crowdsteer.config import build, build_game, load_config
from crowdsteer.errors import ConfigError
from crowdsteer.games.tntp import read_flow

# Braess with ids s = 75674, t = 900, v = 31, w = 4052; x-links t = 1e-9 + x.
BRAESS = [(75674, 31, 1, 1e-9, 1e9, 1), (31, 900, 1, 1, 0, 1), (75674, 4052, 1, 1, 0, 1),
          (4052, 900, 1, 1e-9, 1e9, 1), (31, 4052, 1, 0, 0, 1)]


def write_net(path: Path, links, header: str = "<NUMBER OF ZONES> 2\n<NUMBER OF NODES> 4\n"
              "<FIRST THRU NODE> 1\n") -> Path:
    rows = "\n".join(f"\t{i}\t{j}\t{cap}\t1\t{fft}\t{b}\t{p}\t0\t0\t1\t;"
                     for i, j, cap, fft, b, p in links)
    path.write_text(f"{header}<NUMBER OF LINKS> {len(links)}\n<END OF METADATA>\n"
                    f"~ i j cap len fft b p speed toll type ;\n{rows}\n")
    return path


def setup(tmp_path: Path, links=BRAESS, trips: str = "Origin 75674\n  900 : 1.0;\n",
          node: str | None = None, extra: str = "") -> Path:
    write_net(tmp_path / "net.tntp", links)
    (tmp_path / "trips.tntp").write_text(f"<NUMBER OF ZONES> 2\n<END OF METADATA>\n{trips}")
    files = "net: net.tntp, trips: trips.tntp"
    if node is not None:
        (tmp_path / "node.tntp").write_text(node)
        files += ", node: node.tntp"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"seed: 0\ngame: {{name: routing, network: {{{files}}}}}\n"
                   f"learner: {{name: exact, relative_gap: 1e-9}}\n{extra}")
    return cfg


def solve(cfg: Path):
    return CliRunner().invoke(cli_mod.app, ["solve", str(cfg), "--out",
                                            str(cfg.parent / "run")])


def refused(r) -> str:
    """Exit 2 with one line (no traceback); returns it."""
    assert r.exit_code == 2, (r.exit_code, r.output)
    line = r.stderr.strip()
    assert "Traceback" not in line and len(line.splitlines()) == 1, r.stderr
    return line


def test_arbitrary_node_ids_are_mapped_and_written_back(tmp_path):
    """Ids 75674, 31, 4052, 900 (the header's counts say nothing about them): the zones
    are the ids the trips file names; flows.csv carries the original ids and Braess's
    closed form."""
    cfg = setup(tmp_path)
    r = solve(cfg)
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader((tmp_path / "run" / "flows.csv").read_text().splitlines()))
    assert [(int(x["from"]), int(x["to"])) for x in rows] == [(i, j) for i, j, *_ in BRAESS]
    np.testing.assert_allclose([float(x["flow"]) for x in rows], [1, 0, 0, 1, 1], atol=1e-6)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["total_travel_time"] == pytest.approx(2.0, abs=1e-6)
    game = build_game(load_config(cfg))
    assert game.net.zones == 2 and sorted(game.net.ids[:2]) == [900, 75674]
    assert game.edge_names[0] == "75674->31"


def test_a_header_claiming_100000_nodes_is_read_in_time_of_the_file(tmp_path):
    """Nothing is allocated from the header's claim (it once took 74.5 GiB): the network is
    the 4 nodes its links name, and the map is drawn for them."""
    cfg = setup(tmp_path)
    text = (tmp_path / "net.tntp").read_text()
    (tmp_path / "net.tntp").write_text(text.replace("<NUMBER OF NODES> 4",
                                                    "<NUMBER OF NODES> 100000")
                                       .replace("<NUMBER OF ZONES> 2", "<NUMBER OF ZONES> 100000"))
    game = build_game(load_config(cfg))
    assert (game.net.nodes, game.net.zones) == (4, 2)
    r = solve(cfg)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "run" / "map.png").is_file()


def test_a_utf8_byte_order_mark_is_read(tmp_path):
    cfg = setup(tmp_path)
    for name in ("net.tntp", "trips.tntp"):
        p = tmp_path / name
        p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes())
    assert solve(cfg).exit_code == 0


def _edit_net(old: str, new: str):
    def edit(tmp_path: Path) -> None:
        p = tmp_path / "net.tntp"
        text = p.read_text()
        assert old in text
        p.write_text(text.replace(old, new, 1))
    return edit


def _edit_trips(text: str):
    def edit(tmp_path: Path) -> None:
        (tmp_path / "trips.tntp").write_text(text)
    return edit


def _node_file(text: str):
    def edit(tmp_path: Path) -> None:
        (tmp_path / "node.tntp").write_text(text)
        cfg = tmp_path / "c.yaml"
        cfg.write_text(cfg.read_text().replace("trips: trips.tntp}", "trips: trips.tntp, "
                                               "node: node.tntp}"))
    return edit


def _replace_with(kind: str):
    def edit(tmp_path: Path) -> None:
        p = tmp_path / "net.tntp"
        p.unlink()
        if kind == "folder":
            p.mkdir()
        elif kind == "fifo":
            os.mkfifo(p)
        else:  # the environment of a process: NUL-separated secrets
            p.write_bytes(b"SECRET_TOKEN=hunter2hunter2hunter2\x00HOME=/root\x00")
    return edit


NODES = "Node X Y ;\n75674 0 0 ;\n31 1 1 ;\n4052 1 -1 ;\n900 2 0 ;\n"

BAD = [
    (_edit_net("\t75674\t31\t", "\t75674\tnan\t"), "net.tntp, line 7: term_node nan is not a "
     "node id (allowed: whole numbers >= 0)"),
    (_edit_net("\t75674\t31\t", "\tinf\t31\t"), "line 7: init_node inf is not a node id"),
    (_edit_net("\t75674\t31\t", "\t75674.5\t31\t"), "init_node 75674.5 is not a node id"),
    (_edit_net("<NUMBER OF ZONES> 2", "<NUMBER OF ZONES> inf"),
     "<NUMBER OF ZONES> is 'inf'; allowed: a whole number from 1"),
    (_edit_net("<NUMBER OF ZONES> 2", "<NUMBER OF ZONES> 0"),
     "<NUMBER OF ZONES> is '0'; allowed: a whole number from 1"),
    (_edit_net("<NUMBER OF ZONES> 2", "<NUMBER OF ZONES> 2.7"),
     "<NUMBER OF ZONES> is '2.7'; allowed: a whole number"),
    (_edit_net("<NUMBER OF NODES> 4", "<NUMBER OF NODES> 1e300"),
     "<NUMBER OF NODES> is '1e300'; allowed: a whole number from 1 to 2,147,483,648"),
    (_edit_net("\t31\t900\t1\t", "\t31\t900\t0\t"), "line 8: capacity is 0; allowed: > 0"),
    (_edit_trips("<TOTAL OD FLOW> 5\n<END OF METADATA>\nOrigin 75674\n  900 : 1.0;\n"),
     "trips.tntp: <TOTAL OD FLOW> is '5' but the entries add up to 1"),
    (_edit_trips("<END OF METADATA>\nOrigin 75674\n  901 : 1.0;\n"),
     "trips.tntp, line 3: destination 901 has trips but is not a node of the net file"),
    (_edit_trips("<END OF METADATA>\nOrigin nan\n  900 : 1.0;\n"),
     "trips.tntp, line 2: 'Origin' needs a zone id (a whole number >= 0), got 'nan'"),
    (_node_file(NODES + "31 5 5 ;\n"), "node.tntp, line 6: node 31 is listed twice (first on "
     "line 3); allowed: each node once"),
    (_node_file(NODES.replace("1 1 ;", "1e308 1 ;")), "node.tntp, line 3: coordinates "
     "(1e+308, 1) of node 31; allowed: finite numbers within +-1e+12"),
    (_node_file(NODES.replace("31 1 1", "inf 1 1")), "node.tntp, line 3: node inf is not a "
     "node id"),
    (_replace_with("folder"), "net.tntp is a folder; a TNTP text file is needed"),
    (_replace_with("fifo"), "net.tntp is not a regular file (a pipe or a device)"),
    (_replace_with("secrets"), "net.tntp is not a text file (it contains NUL bytes)"),
]


@pytest.mark.parametrize("edit, message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_a_bad_tntp_file_is_refused_in_one_line(tmp_path, edit, message):
    cfg = setup(tmp_path)
    edit(tmp_path)
    line = refused(solve(cfg))
    assert message in line
    assert "hunter2" not in line and "game.network." in line


def test_an_error_never_quotes_a_whole_line_of_the_file(tmp_path):
    """A file field may name any file: the metadata error says what was expected, not
    what the first line holds."""
    cfg = setup(tmp_path)
    (tmp_path / "net.tntp").write_text("PASSWORD=hunter2 and more secrets\n")
    line = refused(solve(cfg))
    assert "net.tntp, line 1: expected a '<KEY> value' metadata line" in line
    assert "hunter2" not in line


def test_a_listed_pair_tolls_every_parallel_link(tmp_path):
    """``links: [[75674, 31]]`` with two parallel links 75674 -> 31: one toll charges both
    (it used to toll only the first, leaving the twin free)."""
    links = BRAESS + [BRAESS[0]]
    cfg = setup(tmp_path, links, extra="modifier: {name: tolls, links: [[75674, 31]], "
                "bounds: [0, 5]}\n")
    config = load_config(cfg)
    game = build_game(config)
    m = build(config, "modifier", game=game)
    assert m.n_params == 1
    np.testing.assert_allclose(m.theta(np.array([2.0])), [2, 0, 0, 0, 0, 2])
    np.testing.assert_allclose(m.theta_vjp(np.zeros(1), np.arange(6.0)), [0 + 5])


def write_flow(path: Path, rows) -> Path:
    path.write_text("From \tTo \tVolume \tCost \n"
                    + "".join(f"{i}\t{j}\t{v}\t{c}\t;\n" for i, j, v, c in rows))
    return path


def test_a_flow_file_listing_a_link_twice_is_refused(tmp_path):
    """Review defect 3: a _flow file listing 75674 -> 31 twice and leaving out 31 -> 4052
    had the network's row count, so read_flow returned uninitialised memory for the link
    left out; it is refused naming the file, the line and the link."""
    net = build_game(load_config(setup(tmp_path))).net
    rows = [(i, j, 10.0 * k, k) for k, (i, j, *_) in enumerate(BRAESS)]
    rows = rows[:-1] + [rows[0]]  # the last link (31 -> 4052) left out, the first repeated
    with pytest.raises(ConfigError, match=r"flow.tntp, line 6: link 75674 -> 31 is listed "
                       r"twice \(first on line 2\); allowed: each link once"):
        read_flow(write_flow(tmp_path / "flow.tntp", rows), net)


def test_a_flow_file_in_another_order_sets_every_parallel_link(tmp_path):
    """Review defect 3: with two parallel links 75674 -> 31 and the rows in another order
    than the net file, the second row for the pair overwrote the first and the first link
    was left uninitialised; each row now sets the next of the pair's links."""
    net = build_game(load_config(setup(tmp_path, BRAESS + [BRAESS[0]]))).net
    rows = [(i, j, 10.0 * k, k) for k, (i, j, *_) in enumerate(BRAESS + [BRAESS[0]])]
    volume, cost = read_flow(write_flow(tmp_path / "flow.tntp", rows[::-1]), net)
    # link k's own values, but the pair's rows in the file's order: 50 first, then 0
    np.testing.assert_array_equal(volume, [50, 10, 20, 30, 40, 0])
    np.testing.assert_array_equal(cost, [5, 1, 2, 3, 4, 0])
