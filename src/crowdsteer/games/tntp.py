"""Readers for the TNTP road-network files (Transportation Networks for Research).

The format (https://github.com/bstabler/TransportationNetworks): a metadata header of
``<KEY> value`` lines closed by ``<END OF METADATA>``; ``~`` starts a comment line. The
four files a network comes with:

``_net``
    one link per line, ``init_node term_node capacity length free_flow_time b power speed
    toll link_type ;``, with the BPR travel time
    ``t(x) = free_flow_time * (1 + b * (x / capacity) ** power)``. ``<FIRST THRU NODE> f``
    says nodes ``1 .. f - 1`` (zones) are never passed through.
``_trips``
    per ``Origin k`` block, entries ``destination : amount ;``. Repeated entries (the
    same destination twice, or a second block for the same origin) are summed.
``_node``
    ``node x y ;`` coordinates (a header line first).
``_flow``
    ``from to volume cost``: the best known equilibrium.

Every problem found raises one :class:`~crowdsteer.errors.ConfigError` naming the config
field, the file, the line and the problem.

Examples
--------
>>> import tempfile, pathlib
>>> text = '''<NUMBER OF ZONES> 2
... <NUMBER OF NODES> 3
... <FIRST THRU NODE> 1
... <NUMBER OF LINKS> 2
... <END OF METADATA>
... ~ init term cap len fft b power speed toll type ;
... 1 3 100 1 2 0.15 4 0 0 1 ;
... 3 2 100 1 3 0.15 4 0 0 1 ;
... '''
>>> path = pathlib.Path(tempfile.mkdtemp()) / "tiny_net.tntp"
>>> _ = path.write_text(text)
>>> net = read_net(path)
>>> (net.zones, net.nodes, net.E, net.tail.tolist(), net.head.tolist())
(2, 3, 2, [0, 2], [2, 1])
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crowdsteer.errors import ConfigError

Array = np.ndarray

_META = re.compile(r"<([^>]+)>\s*(.*)")
_NET_FIELDS = ("init_node", "term_node", "capacity", "length", "free_flow_time", "b", "power",
               "speed", "toll", "link_type")


@dataclass(frozen=True, eq=False)
class TntpNetwork:
    """A ``_net`` file as arrays, links in file order (``E`` links, ``nodes`` nodes).

    Attributes
    ----------
    tail, head
        ``(E,)`` 0-based node indices (node ``k`` of the file is index ``k - 1``).
    capacity, length, free_flow_time, b, power, speed, toll
        ``(E,)`` the file's columns, as floats.
    link_type
        ``(E,)`` integers.
    zones
        Zones are nodes ``1 .. zones``.
    first_thru_node
        Nodes below it (1-based) are never passed through.
    """

    path: Path
    zones: int
    nodes: int
    first_thru_node: int
    tail: Array
    head: Array
    capacity: Array
    length: Array
    free_flow_time: Array
    b: Array
    power: Array
    speed: Array
    toll: Array
    link_type: Array

    @property
    def E(self) -> int:
        return int(self.tail.shape[0])

    def travel_time(self, x: Array) -> Array:
        """``(E,)`` BPR times ``fft (1 + b (x / capacity)^power)``."""
        return self.free_flow_time * (1.0 + self.b * (np.maximum(x, 0.0) / self.capacity)
                                      ** self.power)


@dataclass(frozen=True, eq=False)
class TntpTrips:
    """A ``_trips`` file: ``demand[o, d]`` trips from zone ``o + 1`` to zone ``d + 1``."""

    path: Path
    demand: Array
    """``(zones, zones)``; intrazonal entries (``o == d``) are kept as read."""
    origin_line: dict[int, int]
    """Line of each ``Origin k`` header (1-based zone -> line), for error messages."""


def _error(field: str, path: Path, line: int | None, problem: str) -> ConfigError:
    where = f"{path}" if line is None else f"{path}, line {line}"
    return ConfigError(field, f"{where}: {problem}")


def _read(path: Path, field: str) -> str:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(field, f"file not found: {path}")
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(field, f"cannot read {path} ({exc})") from None


def _split_metadata(text: str, path: Path, field: str,
                    required: bool = True) -> tuple[dict[str, str], int, list[str]]:
    """``(metadata, number of the first body line, body lines)``; line numbers are 1-based."""
    lines = text.splitlines()
    meta: dict[str, str] = {}
    for i, line in enumerate(lines):
        s = line.strip()
        if s.upper().startswith("<END OF METADATA>"):
            return meta, i + 2, lines[i + 1:]
        m = _META.match(s)
        if m:
            meta[m.group(1).strip().upper()] = m.group(2).split("~")[0].strip()
        elif s and not s.startswith("~"):
            if not required:
                return meta, i + 1, lines[i:]
            raise _error(field, path, i + 1, f"expected a <KEY> value metadata line or "
                         f"<END OF METADATA>, got {s[:40]!r}")
    if not required:
        return meta, 1, lines
    raise _error(field, path, None, "no <END OF METADATA> line: not a TNTP file")


def _meta_int(meta: dict[str, str], key: str, path: Path, field: str,
              default: int | None = None) -> int:
    if key not in meta:
        if default is not None:
            return default
        raise _error(field, path, None, f"the metadata has no <{key}>")
    try:
        value = int(float(meta[key]))
    except ValueError:
        raise _error(field, path, None, f"<{key}> is {meta[key]!r}; a whole number is "
                     "needed") from None
    if value < 0:
        raise _error(field, path, None, f"<{key}> is {value}; must be >= 0")
    return value


def read_net(path: str | Path, field: str = "game.network.net") -> TntpNetwork:
    """Read a ``_net`` file; refuses malformed lines, bad values and unknown nodes."""
    path = Path(path)
    meta, first, body = _split_metadata(_read(path, field), path, field)
    zones = _meta_int(meta, "NUMBER OF ZONES", path, field)
    nodes = _meta_int(meta, "NUMBER OF NODES", path, field)
    thru = _meta_int(meta, "FIRST THRU NODE", path, field, default=1)
    n_links = _meta_int(meta, "NUMBER OF LINKS", path, field, default=0)
    rows: list[list[float]] = []
    for k, line in enumerate(body):
        s = line.split("~")[0].strip()
        if not s:
            continue
        lineno = first + k
        parts = s.rstrip(";").split()
        if len(parts) != len(_NET_FIELDS):
            raise _error(field, path, lineno, f"a link line needs {len(_NET_FIELDS)} numbers "
                         f"({' '.join(_NET_FIELDS)}) then ';', got {len(parts)} fields")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            bad = next(p for p in parts if not _is_number(p))
            raise _error(field, path, lineno, f"{bad!r} is not a number") from None
        problem = _link_problem(values, nodes)
        if problem:
            raise _error(field, path, lineno, problem)
        rows.append(values)
    if not rows:
        raise _error(field, path, None, "no links")
    if n_links and n_links != len(rows):
        raise _error(field, path, None, f"<NUMBER OF LINKS> says {n_links} but the file "
                     f"lists {len(rows)} links")
    if zones > nodes:
        raise _error(field, path, None, f"<NUMBER OF ZONES> {zones} exceeds <NUMBER OF "
                     f"NODES> {nodes}")
    a = np.asarray(rows, dtype=float)
    return TntpNetwork(
        path=path, zones=zones, nodes=nodes, first_thru_node=max(thru, 1),
        tail=a[:, 0].astype(np.int64) - 1, head=a[:, 1].astype(np.int64) - 1,
        capacity=a[:, 2], length=a[:, 3], free_flow_time=a[:, 4], b=a[:, 5], power=a[:, 6],
        speed=a[:, 7], toll=a[:, 8], link_type=a[:, 9].astype(np.int64))


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _link_problem(v: list[float], nodes: int) -> str | None:
    i, j, cap, length, fft, b, power = v[:7]
    for name, node in (("init_node", i), ("term_node", j)):
        if node != int(node) or not 1 <= node <= nodes:
            return f"{name} {node:g} is not a node (allowed: whole numbers 1..{nodes})"
    if i == j:
        return f"a loop at node {int(i)}: a link joins two different nodes"
    if not all(np.isfinite(v)):
        return "contains NaN or infinite values"
    checks = (("free_flow_time", fft >= 0, ">= 0"), ("b", b >= 0, ">= 0"),
              ("power", power >= 0, ">= 0"), ("length", length >= 0, ">= 0"),
              ("capacity", cap > 0 or b == 0, "> 0 (or b = 0)"))
    for name, ok, allowed in checks:
        if not ok:
            return f"{name} is {v[_NET_FIELDS.index(name)]:g}; allowed: {allowed}"
    return None


_TRIP = re.compile(r"(\S+?)\s*:\s*([^;\s]+)\s*;")


def read_trips(path: str | Path, zones: int, field: str = "game.network.trips") -> TntpTrips:
    """Read a ``_trips`` file into a ``(zones, zones)`` matrix (``zones`` from the net file)."""
    path = Path(path)
    meta, first, body = _split_metadata(_read(path, field), path, field)
    declared = _meta_int(meta, "NUMBER OF ZONES", path, field, default=zones)
    if declared != zones:
        raise _error(field, path, None, f"<NUMBER OF ZONES> is {declared} but the network "
                     f"has {zones} zones")
    demand = np.zeros((zones, zones))
    origin_line: dict[int, int] = {}
    origin = None
    for k, line in enumerate(body):
        s = line.strip()
        if not s or s.startswith("~"):
            continue
        lineno = first + k
        if s.lower().startswith("origin"):
            token = s[6:].strip()
            try:
                o = int(token)
            except ValueError:
                raise _error(field, path, lineno, f"'Origin' needs a zone number, got "
                             f"{token!r}") from None
            if not 1 <= o <= zones:
                raise _error(field, path, lineno, f"unknown origin {o} (zones are 1..{zones})")
            origin = o - 1
            origin_line.setdefault(o, lineno)
            continue
        if origin is None:
            raise _error(field, path, lineno, "an entry before the first 'Origin' line")
        pos = 0
        for m in _TRIP.finditer(s):
            if s[pos:m.start()].strip():
                break
            try:
                d, amount = int(m.group(1)), float(m.group(2))
            except ValueError:
                raise _error(field, path, lineno, f"malformed entry {m.group(0)!r}; expected "
                             "'destination : amount;'") from None
            if not 1 <= d <= zones:
                raise _error(field, path, lineno, f"unknown destination {d} (zones are "
                             f"1..{zones})")
            if not (np.isfinite(amount) and amount >= 0):
                raise _error(field, path, lineno, f"trips {amount!r} to {d}; allowed: "
                             "finite numbers >= 0")
            demand[origin, d - 1] += amount
            pos = m.end()
        if s[pos:].strip():
            raise _error(field, path, lineno, f"cannot read {s[pos:].strip()[:40]!r}; "
                         "expected entries 'destination : amount;'")
    return TntpTrips(path=path, demand=demand, origin_line=origin_line)


def _table(path: Path, field: str, columns: int) -> tuple[list[int], Array]:
    """Rows of ``columns`` numbers (a header line and metadata allowed); ``(line numbers,
    (rows, columns) array)``."""
    _, first, body = _split_metadata(_read(path, field), path, field, required=False)
    rows, where = [], []
    for k, line in enumerate(body):
        s = line.split("~")[0].strip().rstrip(";").strip()
        if not s:
            continue
        parts = s.split()
        if not all(_is_number(p) for p in parts):
            if not rows:  # a header line
                continue
            raise _error(field, path, first + k, f"cannot read {s[:40]!r} as numbers")
        if len(parts) < columns:
            raise _error(field, path, first + k, f"needs {columns} numbers, got {len(parts)}")
        rows.append([float(p) for p in parts[:columns]])
        where.append(first + k)
    if not rows:
        raise _error(field, path, None, "no rows of numbers")
    return where, np.asarray(rows)


def read_nodes(path: str | Path, nodes: int, field: str = "game.network.node") -> Array:
    """``(nodes, 2)`` coordinates from a ``_node`` file (``NaN`` where a node is missing)."""
    path = Path(path)
    where, a = _table(path, field, 3)
    xy = np.full((nodes, 2), np.nan)
    for line, (k, x, y) in zip(where, a):
        if k != int(k) or not 1 <= k <= nodes:
            raise _error(field, path, line, f"node {k:g} is not in the network (1..{nodes})")
        xy[int(k) - 1] = (x, y)
    return xy


def read_flow(path: str | Path, net: TntpNetwork, field: str = "flow") -> tuple[Array, Array]:
    """``(volume, cost)``, ``(E,)`` each in the net file's link order, from a ``_flow`` file."""
    path = Path(path)
    where, a = _table(path, field, 4)
    if a.shape[0] != net.E:
        raise _error(field, path, None, f"{a.shape[0]} links, the network has {net.E}")
    tail, head = a[:, 0].astype(np.int64) - 1, a[:, 1].astype(np.int64) - 1
    if np.array_equal(tail, net.tail) and np.array_equal(head, net.head):
        return a[:, 2].copy(), a[:, 3].copy()
    index = {(int(i), int(j)): e for e, (i, j) in enumerate(zip(net.tail, net.head))}
    volume, cost = np.empty(net.E), np.empty(net.E)
    for line, i, j, v, c in zip(where, tail, head, a[:, 2], a[:, 3]):
        e = index.get((int(i), int(j)))
        if e is None:
            raise _error(field, path, line, f"no link {i + 1} -> {j + 1} in the network")
        volume[e], cost[e] = v, c
    return volume, cost
