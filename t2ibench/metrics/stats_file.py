"""Where a statistics file (``.npz`` of FID/FD ``mu``, ``sigma``) came from, and the check that it fits.

A file t2ibench writes carries, beside ``mu`` and ``sigma``, one JSON string ``t2ibench_provenance``
(a unicode array, so it loads without pickle): the extractor, a hash of its weights, the resize mode,
the image size, the image count and the t2ibench version (clean-fid's lesson: statistics are only
comparable when all of these match). Comparing statistics made with a different extractor, weights or
resize is a user error naming both sides. A foreign file (pytorch-fid's, MLPerf's) has no provenance:
it is accepted, and the scores made with it say so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from t2ibench.errors import UserError

PROVENANCE_KEY = "t2ibench_provenance"
CHECKED = ("extractor", "weights", "resize")  # what must match for two sets of statistics to be compared
FOREIGN_NOTE = ("reference statistics without provenance (a foreign .npz, e.g. pytorch-fid's or MLPerf's): "
                "their extractor, weights and resize could not be checked")


def extractor_provenance(key: str) -> dict[str, str]:
    """``{"extractor", "weights", "resize"}`` from an extractor's cache key (``name|resize=…|w=…``)."""
    name, *parts = key.split("|")
    fields = dict(p.split("=", 1) for p in parts if "=" in p)
    out = {"extractor": name, "weights": fields.get("w", "")}
    if "resize" in fields:
        out["resize"] = fields["resize"]
    return out


def image_size(paths: list[Path]) -> str:
    """``"WxH"`` when every image has that size, else ``"mixed"`` (read from the headers)."""
    from t2ibench.metrics.images import image_sizes

    sizes = set(image_sizes(paths).values())
    if len(sizes) == 1:
        w, h = sizes.pop()
        return f"{w}x{h}"
    return "mixed"


def provenance(extractor_key: str, paths: list[Path], n: int) -> dict[str, Any]:
    from t2ibench import __version__

    return {**extractor_provenance(extractor_key), "image_size": image_size(paths), "count": n,
            "t2ibench": __version__}


def save(path: str | Path, stats: tuple[np.ndarray, np.ndarray], meta: dict[str, Any]) -> None:
    """``mu``, ``sigma`` as pytorch-fid writes them (``np.savez_compressed``), plus the provenance."""
    np.savez_compressed(path, mu=stats[0], sigma=stats[1], **{PROVENANCE_KEY: np.array(json.dumps(meta))})


def read_provenance(path: str | Path) -> dict[str, Any] | None:
    """The provenance of a statistics file, or None for a foreign one."""
    try:
        with np.load(path, allow_pickle=False) as f:
            if PROVENANCE_KEY not in f.files:
                return None
            meta = json.loads(str(f[PROVENANCE_KEY]))
    except (OSError, ValueError, TypeError, EOFError) as e:
        raise UserError(f"{path}: unreadable statistics provenance ({e})") from None
    return meta if isinstance(meta, dict) else None


def _describe(meta: dict[str, Any]) -> str:
    return ", ".join(f"{k}={meta.get(k, '?')}" for k in CHECKED if k in meta)


def check(path: str | Path, meta: dict[str, Any] | None, other: dict[str, Any], other_name: str) -> None:
    """A UserError naming both sides when ``meta`` (the file's) and ``other`` differ in what must match."""
    if meta is None:
        return
    differ = [k for k in CHECKED if k in meta and k in other and str(meta[k]) != str(other[k])]
    if differ:
        raise UserError(f"{path}: statistics made with {_describe(meta)} cannot be compared with {other_name} "
                        f"made with {_describe(other)} ({', '.join(differ)} differ); recompute them with the same "
                        "extractor, weights and resize")
