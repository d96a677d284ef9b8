"""Run folders: refusing to overwrite another run, writing JSON and arrays atomically."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from crowdsteer.errors import ConfigError

MARKERS = ("summary.json", "result.json", "study.db", "evaluations.csv")


def prepare(out: Path, force: bool = False, resume: bool = False,
            resumable: bool = True) -> Path:
    """Create ``out``; refuse a folder that holds another run unless ``force`` or ``resume``
    (``resumable``: whether the command has a ``--resume`` to suggest)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError("--out", f"{out} exists and is not a folder")
    held = [m for m in MARKERS if (out / m).exists()]
    if held and not (force or resume):
        how = "--resume to continue it or --force" if resumable else "--force"
        raise ConfigError("--out", f"{out} already holds a run ({held[0]}); pass {how} to "
                          "overwrite it, or choose another folder")
    if force and not resume:
        for m in (*MARKERS, "best_mu.npy", "mu.npy", "pi.npy", "report.html"):
            if (out / m).exists():
                (out / m).unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def _clean(x: Any) -> Any:
    """JSON-safe: arrays to lists, non-finite floats to None."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (a crash never leaves half a file)."""
    atomic_write(path, (json.dumps(_clean(data), indent=2) + "\n").encode())


def save_npy(path: Path, arr: np.ndarray) -> None:
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    atomic_write(path, buf.getvalue())


def atomic_write(path: Path, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
