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

Node ids are whatever the files use (most number them ``1 .. N``; some use arbitrary ids
such as ``75674``): the reader maps them to indices ``0 .. N - 1`` (``TntpNetwork.ids``
maps back, and every output writes the original ids). The zones are the node ids that
appear in the net file and in the trips file, whatever the header's counts say; the
header's counts are checked to be whole numbers >= 1 but never allocate anything, so a
file costs time and memory in proportion to its length, not to what its header claims.

Every problem found raises one :class:`~crowdsteer.errors.ConfigError` naming the config
field, the file, the line and the problem (file contents are quoted only as short
number-like tokens, never whole lines).

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
>>> (net.zones, net.nodes, net.E, net.tail.tolist(), net.head.tolist(), net.ids.tolist())
(2, 3, 2, [0, 2], [2, 1], [1, 2, 3])
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from crowdsteer.errors import ConfigError

Array = np.ndarray

_META = re.compile(r"<([^>]+)>\s*(.*)")
_NET_FIELDS = ("init_node", "term_node", "capacity", "length", "free_flow_time", "b", "power",
               "speed", "toll", "link_type")
MAX_ID = 2.0 ** 53
"""Node ids are whole numbers in ``[0, MAX_ID)`` (exact as floats)."""
MAX_COUNT = 2 ** 31
"""Header counts above this are refused as absurd."""
MAX_COORD = 1e12
"""Node coordinates beyond ``+-MAX_COORD`` are refused (the map's extent would overflow)."""
TOTAL_TOLERANCE = 1e-5
"""``<TOTAL OD FLOW>`` must match the trips read to this relative tolerance."""


@dataclass(frozen=True, eq=False)
class TntpNetwork:
    """A ``_net`` file as arrays, links in file order (``E`` links, ``nodes`` nodes).

    Attributes
    ----------
    tail, head
        ``(E,)`` 0-based node indices; ``ids[tail]`` are the file's node ids.
    capacity, length, free_flow_time, b, power, speed, toll
        ``(E,)`` the file's columns, as floats.
    link_type
        ``(E,)`` integers.
    zones
        The zones are node indices ``0 .. zones - 1``.
    first_thru_node
        Node ids below it are never passed through.
    ids
        ``(nodes,)`` the file's id of every node index.
    meta
        The net file's metadata (upper-case keys), e.g. for units.
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
    ids: Array = None  # type: ignore[assignment]
    meta: dict | None = None

    def __post_init__(self) -> None:
        if self.ids is None:
            object.__setattr__(self, "ids", np.arange(1, self.nodes + 1, dtype=np.int64))

    @property
    def E(self) -> int:
        return int(self.tail.shape[0])

    @property
    def blocked(self) -> Array:
        """``(nodes,)`` True for nodes never passed through (ids below the first thru node)."""
        return self.ids < self.first_thru_node

    def index_of(self, node_ids: Array) -> Array:
        """Node indices of file ids (``-1`` where an id is not a node)."""
        order = np.argsort(self.ids)
        ids = np.asarray(node_ids, dtype=np.int64)
        pos = np.clip(np.searchsorted(self.ids[order], ids), 0, self.nodes - 1)
        found = self.ids[order][pos] == ids
        return np.where(found, order[pos], -1)

    def with_zones(self, zone_ids: Array) -> "TntpNetwork":
        """The network with its nodes renumbered so that ``zone_ids`` (file ids of nodes,
        sorted) come first, the other nodes after them in id order."""
        zone_idx = self.index_of(zone_ids)
        rest = np.setdiff1d(np.arange(self.nodes), zone_idx)
        order = np.concatenate([zone_idx, rest[np.argsort(self.ids[rest])]])
        new_index = np.empty(self.nodes, np.int64)
        new_index[order] = np.arange(self.nodes)
        return replace(self, zones=int(zone_idx.shape[0]), ids=self.ids[order],
                       tail=new_index[self.tail], head=new_index[self.head])

    def travel_time(self, x: Array) -> Array:
        """``(E,)`` BPR times ``fft (1 + b (x / capacity)^power)``."""
        return self.free_flow_time * (1.0 + self.b * (np.maximum(x, 0.0) / self.capacity)
                                      ** self.power)


@dataclass(frozen=True, eq=False)
class TntpTrips:
    """A ``_trips`` file: ``demand[o, d]`` trips from zone ``zone_ids[o]`` to ``zone_ids[d]``."""

    path: Path
    demand: Array
    """``(zones, zones)``; intrazonal entries (``o == d``) are kept as read."""
    origin_line: dict[int, int]
    """Line of each ``Origin k`` header (file id -> line), for error messages."""
    zone_ids: Array | None = None
    """``(zones,)`` sorted file ids of the zones (``1 .. zones`` when ``None``)."""


def _error(field: str, path: Path, line: int | None, problem: str) -> ConfigError:
    where = f"{path}" if line is None else f"{path}, line {line}"
    return ConfigError(field, f"{where}: {problem}")


def _token(s: str) -> str:
    """A short quote of a token of a file (never a whole line: a file field may name any
    file, ``/proc/self/environ`` included)."""
    return repr(s if len(s) <= 16 else s[:12] + "...")


def _read(path: Path, field: str) -> str:
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ConfigError(field, f"file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(field, f"cannot read {path} ({exc.strerror})") from None
    if stat.S_ISDIR(mode):
        raise ConfigError(field, f"{path} is a folder; a TNTP text file is needed")
    if not stat.S_ISREG(mode):  # a FIFO or a device would block or never end
        raise ConfigError(field, f"{path} is not a regular file (a pipe or a device); a "
                          "TNTP text file is needed")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is allowed
    except OSError as exc:
        raise ConfigError(field, f"cannot read {path} ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(field, f"{path} is not UTF-8 text (byte {exc.start})") from None
    if "\x00" in text:
        raise ConfigError(field, f"{path} is not a text file (it contains NUL bytes)")
    return text


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
            key, value = m.group(1).strip().upper(), m.group(2)
            meta[key] = value.strip() if key == "ORIGINAL HEADER" else value.split("~")[0].strip()
        elif s and not s.startswith("~"):
            if not required:
                return meta, i + 1, lines[i:]
            raise _error(field, path, i + 1, "expected a '<KEY> value' metadata line or "
                         "<END OF METADATA>: not a TNTP file")
    if not required:
        return meta, 1, lines
    raise _error(field, path, None, "no <END OF METADATA> line: not a TNTP file")


def _meta_int(meta: dict[str, str], key: str, path: Path, field: str,
              default: int | None = None) -> int:
    """A header count: a whole number in ``1 .. MAX_COUNT`` (never used to allocate)."""
    if key not in meta:
        if default is not None:
            return default
        raise _error(field, path, None, f"the metadata has no <{key}>")
    try:
        value = float(meta[key])
    except ValueError:
        value = float("nan")
    if not (np.isfinite(value) and value == int(value) and 1 <= value <= MAX_COUNT):
        raise _error(field, path, None, f"<{key}> is {_token(meta[key])}; allowed: a whole "
                     f"number from 1 to {MAX_COUNT:,}")
    return int(value)


def _node_id(value: float, name: str) -> str | None:
    if not (np.isfinite(value) and value == int(value) and 0 <= value < MAX_ID):
        return f"{name} {value:g} is not a node id (allowed: whole numbers >= 0)"
    return None


def read_net(path: str | Path, field: str = "game.network.net") -> TntpNetwork:
    """Read a ``_net`` file; refuses malformed lines and bad values, in one line each.

    Nodes are indexed in the order of their ids; ``zones`` counts the node ids from 1 to
    the header's ``<NUMBER OF ZONES>`` (the classic numbering) until a trips file says
    which nodes are zones (:func:`read_trips` then :meth:`TntpNetwork.with_zones`).
    """
    path = Path(path)
    meta, first, body = _split_metadata(_read(path, field), path, field)
    zones = _meta_int(meta, "NUMBER OF ZONES", path, field)
    _meta_int(meta, "NUMBER OF NODES", path, field, default=1)  # checked, never used
    thru = _meta_int(meta, "FIRST THRU NODE", path, field, default=1)
    n_links = _meta_int(meta, "NUMBER OF LINKS", path, field, default=0) if \
        "NUMBER OF LINKS" in meta else 0
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
            raise _error(field, path, lineno, f"{_token(bad)} is not a number") from None
        problem = _link_problem(values)
        if problem:
            raise _error(field, path, lineno, problem)
        rows.append(values)
    if not rows:
        raise _error(field, path, None, "no links")
    if n_links and n_links != len(rows):
        raise _error(field, path, None, f"<NUMBER OF LINKS> says {n_links} but the file "
                     f"lists {len(rows)} links")
    a = np.asarray(rows, dtype=float)
    ends = a[:, :2].astype(np.int64)
    ids, index = np.unique(ends, return_inverse=True)
    index = index.reshape(-1, 2)
    return TntpNetwork(
        path=path, zones=int(np.count_nonzero((ids >= 1) & (ids <= zones))), nodes=len(ids),
        first_thru_node=thru, tail=index[:, 0], head=index[:, 1],
        capacity=a[:, 2], length=a[:, 3], free_flow_time=a[:, 4], b=a[:, 5], power=a[:, 6],
        speed=a[:, 7], toll=a[:, 8], link_type=a[:, 9].astype(np.int64), ids=ids, meta=meta)


_UNIT = re.compile(r"\(([^)]*)\)")
_UNIT_COLUMNS = (("capacity", ("capacity",)), ("length", ("length",)),
                 ("time", ("free flow", "fftt", "free_flow", "fft")),
                 ("speed", ("speed",)), ("toll", ("toll",)))


def units(net: TntpNetwork) -> dict[str, str]:
    """Units of the net file's columns from its ``<ORIGINAL HEADER>`` (``"Capacity
    (veh/h)"``: ``veh/h``), ``"units of the input"`` where it names none.

    >>> class N: meta = {"ORIGINAL HEADER": "~ Tail Head Capacity (veh/h) Length (ft) "
    ...                  "Free Flow Time (min) B Power Speed (ft/min) Toll Type ;"}
    >>> units(N())["time"], units(N())["length"], units(N())["toll"]
    ('min', 'ft', 'units of the input')
    """
    header = (net.meta or {}).get("ORIGINAL HEADER", "")
    cells = [c.strip().lower() for c in re.split(r"\t|\s{2,}|(?<=\))\s", header)
             if c.strip()]
    out = {}
    for name, words in _UNIT_COLUMNS:
        cell = next((c for c in cells if any(w in c for w in words)), "")
        m = _UNIT.search(cell)
        out[name] = m.group(1).strip() if m and m.group(1).strip() else "units of the input"
    return out


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _link_problem(v: list[float]) -> str | None:
    i, j, cap, length, fft, b, power = v[:7]
    for name, node in (("init_node", i), ("term_node", j)):
        problem = _node_id(node, name)
        if problem:
            return problem
    if i == j:
        return f"a loop at node {int(i)}: a link joins two different nodes"
    if not all(np.isfinite(v)):
        bad = next(n for n, x in zip(_NET_FIELDS, v) if not np.isfinite(x))
        return f"{bad} is {v[_NET_FIELDS.index(bad)]:g}; allowed: finite numbers"
    checks = (("free_flow_time", fft >= 0, ">= 0"), ("b", b >= 0, ">= 0"),
              ("power", power >= 0, ">= 0"), ("length", length >= 0, ">= 0"),
              ("capacity", cap > 0, "> 0 (a link without congestion has b = 0 and any "
               "capacity > 0)"))
    for name, ok, allowed in checks:
        if not ok:
            return f"{name} is {v[_NET_FIELDS.index(name)]:g}; allowed: {allowed}"
    return None


_TRIP = re.compile(r"(\S+?)\s*:\s*([^;\s]+)\s*;")


def read_trips(path: str | Path, net: TntpNetwork | int,
               field: str = "game.network.trips") -> TntpTrips:
    """Read a ``_trips`` file.

    With a :class:`TntpNetwork`, the zones are the net's node ids the file names (as
    origins or destinations), sorted; an id with trips that is not a node of the net is
    refused. With a number ``Z`` (the classic numbering) the zones are ``1 .. Z``.
    """
    path = Path(path)
    meta, first, body = _split_metadata(_read(path, field), path, field)
    _meta_int(meta, "NUMBER OF ZONES", path, field, default=1)  # checked, never used
    total = meta.get("TOTAL OD FLOW")
    known = None if isinstance(net, int) else net.ids
    limit = int(net) if isinstance(net, int) else None
    o_ids: list[int] = []
    d_ids: list[int] = []
    amounts: list[float] = []
    lines: list[int] = []
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
                o = float(token)
            except ValueError:
                o = float("nan")
            if _node_id(o, "origin"):
                raise _error(field, path, lineno, f"'Origin' needs a zone id (a whole number "
                             f">= 0), got {_token(token)}")
            if limit is not None and not 1 <= o <= limit:
                raise _error(field, path, lineno, f"unknown origin {o:g} (zones are "
                             f"1..{limit})")
            origin = int(o)
            origin_line.setdefault(origin, lineno)
            continue
        if origin is None:
            raise _error(field, path, lineno, "an entry before the first 'Origin' line")
        pos = 0
        for m in _TRIP.finditer(s):
            if s[pos:m.start()].strip():
                break
            try:
                d, amount = float(m.group(1)), float(m.group(2))
            except ValueError:
                raise _error(field, path, lineno, "malformed entry; expected "
                             "'destination : amount;'") from None
            if _node_id(d, "destination"):
                raise _error(field, path, lineno, f"destination {d:g} is not a zone id "
                             "(allowed: whole numbers >= 0)")
            if limit is not None and not 1 <= d <= limit:
                raise _error(field, path, lineno, f"unknown destination {d:g} (zones are "
                             f"1..{limit})")
            if not (np.isfinite(amount) and amount >= 0):
                raise _error(field, path, lineno, f"trips {amount!r} to {d:g}; allowed: "
                             "finite numbers >= 0")
            o_ids.append(origin)
            d_ids.append(int(d))
            amounts.append(amount)
            lines.append(lineno)
            pos = m.end()
        if s[pos:].strip():
            raise _error(field, path, lineno, "cannot read the rest of the line; expected "
                         "entries 'destination : amount;'")
    o_arr, d_arr = np.asarray(o_ids, np.int64), np.asarray(d_ids, np.int64)
    a = np.asarray(amounts, float)
    if total is not None:
        _check_total(total, float(a.sum()), path, field)
    if known is None:
        zone_ids = np.arange(1, limit + 1, dtype=np.int64)
    else:
        mentioned = np.unique(np.concatenate([o_arr, d_arr, list(origin_line)]).astype(np.int64))
        zone_ids = mentioned[np.isin(mentioned, known)]
        for ends, what in ((o_arr, "origin"), (d_arr, "destination")):
            bad = np.flatnonzero(~np.isin(ends, known) & (a > 0))
            if bad.size:
                e = bad[0]
                raise _error(field, path, lines[e], f"{what} {ends[e]} has trips but is not a "
                             f"node of the net file {net.path.name} ({bad.size} such entries)")
        keep = np.isin(o_arr, zone_ids) & np.isin(d_arr, zone_ids)
        o_arr, d_arr, a = o_arr[keep], d_arr[keep], a[keep]
    Z = zone_ids.shape[0]
    _check_size(Z, path, field)
    demand = np.zeros((Z, Z))
    np.add.at(demand, (np.searchsorted(zone_ids, o_arr), np.searchsorted(zone_ids, d_arr)), a)
    return TntpTrips(path=path, demand=demand, origin_line=origin_line, zone_ids=zone_ids)


def _check_total(total: str, found: float, path: Path, field: str) -> None:
    try:
        claimed = float(total)
    except ValueError:
        claimed = float("nan")
    if not np.isfinite(claimed) or abs(claimed - found) > TOTAL_TOLERANCE * max(abs(claimed),
                                                                                 1.0):
        raise _error(field, path, None, f"<TOTAL OD FLOW> is {_token(total)} but the entries "
                     f"add up to {found:.10g} (allowed: equal to a relative "
                     f"{TOTAL_TOLERANCE:g}, or no <TOTAL OD FLOW> line)")


MAX_DEMAND_BYTES = 2 ** 32
"""The dense ``(zones, zones)`` demand matrix may take up to 4 GiB."""


def _check_size(zones: int, path: Path, field: str) -> None:
    need = 8.0 * zones * zones
    if need > MAX_DEMAND_BYTES:
        raise _error(field, path, None, f"{zones:,} zones need a {zones:,} x {zones:,} demand "
                     f"matrix of {need / 2**30:.1f} GiB; allowed: up to "
                     f"{MAX_DEMAND_BYTES / 2**30:.0f} GiB")


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
            bad = next(p for p in parts if not _is_number(p))
            raise _error(field, path, first + k, f"{_token(bad)} is not a number")
        if len(parts) < columns:
            raise _error(field, path, first + k, f"needs {columns} numbers, got {len(parts)}")
        rows.append([float(p) for p in parts[:columns]])
        where.append(first + k)
    if not rows:
        raise _error(field, path, None, "no rows of numbers")
    return where, np.asarray(rows)


def read_nodes(path: str | Path, net: TntpNetwork | int,
               field: str = "game.network.node") -> Array:
    """``(nodes, 2)`` coordinates from a ``_node`` file, in the net's node order (``NaN``
    where a node is missing; nodes of the file that no link uses are skipped). Refuses
    ids that are not whole numbers, an id listed twice, and coordinates that are not
    finite or beyond ``+-MAX_COORD``."""
    path = Path(path)
    where, a = _table(path, field, 3)
    if isinstance(net, int):
        net_ids = np.arange(1, net + 1, dtype=np.int64)
        index = lambda ids: np.where((ids >= 1) & (ids <= net), ids - 1, -1)  # noqa: E731
    else:
        net_ids, index = net.ids, net.index_of
    for line, (k, x, y) in zip(where, a):
        problem = _node_id(k, "node")
        if problem:
            raise _error(field, path, line, problem)
        if not all(np.isfinite((x, y)) & (np.abs((x, y)) <= MAX_COORD)):
            raise _error(field, path, line, f"coordinates ({x:g}, {y:g}) of node {k:g}; "
                         f"allowed: finite numbers within +-{MAX_COORD:g}")
    ids = a[:, 0].astype(np.int64)
    uniq, first, counts = np.unique(ids, return_index=True, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1][0]
        second = np.flatnonzero(ids == dup)[1]
        raise _error(field, path, where[second], f"node {dup} is listed twice (first on line "
                     f"{where[np.flatnonzero(ids == dup)[0]]}); allowed: each node once")
    xy = np.full((net_ids.shape[0], 2), np.nan)
    idx = index(ids)
    keep = idx >= 0
    xy[idx[keep]] = a[keep, 1:3]
    return xy


def read_flow(path: str | Path, net: TntpNetwork, field: str = "flow") -> tuple[Array, Array]:
    """``(volume, cost)``, ``(E,)`` each in the net file's link order, from a ``_flow`` file.
    Refuses a link listed twice (parallel links: more often than the net file has it), so
    that the file's ``E`` rows set every link (none is left as uninitialised memory)."""
    path = Path(path)
    where, a = _table(path, field, 4)
    if a.shape[0] != net.E:
        raise _error(field, path, None, f"{a.shape[0]} links, the network has {net.E}")
    tail_id, head_id = a[:, 0].astype(np.int64), a[:, 1].astype(np.int64)
    if np.array_equal(tail_id, net.ids[net.tail]) and np.array_equal(head_id, net.ids[net.head]):
        return a[:, 2].copy(), a[:, 3].copy()
    unset: dict[tuple[int, int], list[int]] = {}  # per pair, its links not yet set, in order
    for e, (i, j) in enumerate(zip(net.ids[net.tail].tolist(), net.ids[net.head].tolist())):
        unset.setdefault((i, j), []).append(e)
    first: dict[tuple[int, int], int] = {}
    volume, cost = np.empty(net.E), np.empty(net.E)
    for line, i, j, v, c in zip(where, tail_id, head_id, a[:, 2], a[:, 3]):
        pair = (int(i), int(j))
        if pair not in unset:
            raise _error(field, path, line, f"no link {i} -> {j} in the network")
        if not unset[pair]:
            raise _error(field, path, line, f"link {i} -> {j} is listed twice (first on line "
                         f"{first[pair]}); allowed: each link once")
        first.setdefault(pair, line)
        e = unset[pair].pop(0)
        volume[e], cost[e] = v, c
    return volume, cost
