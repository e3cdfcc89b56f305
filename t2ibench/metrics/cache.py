"""Feature cache: (network key, content hash) → float32 vector, in one sqlite file."""

from __future__ import annotations

import hashlib
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def content_hash(path: str | Path) -> str:
    """sha256 of the file's bytes (so a moved or renamed image keeps its cached features)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def hash_files(paths: list[Path], threads: int = 4) -> list[str]:
    with ThreadPoolExecutor(threads) as pool:  # hashlib releases the GIL
        return list(pool.map(content_hash, paths))


class FeatureCache:
    """Persistent cache in ``<dir>/features.sqlite``; ``FeatureCache(None)`` caches nothing."""

    def __init__(self, cache_dir: str | Path | None):
        self._db: sqlite3.Connection | None = None
        if cache_dir is not None:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(Path(cache_dir) / "features.sqlite", timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS features (net TEXT, content TEXT, data BLOB, "
                             "PRIMARY KEY (net, content))")

    def get(self, net: str, contents: list[str]) -> dict[str, np.ndarray]:
        if self._db is None or not contents:
            return {}
        found: dict[str, np.ndarray] = {}
        uniq = list(dict.fromkeys(contents))
        for i in range(0, len(uniq), 500):
            chunk = uniq[i:i + 500]
            rows = self._db.execute(
                f"SELECT content, data FROM features WHERE net = ? AND content IN ({','.join('?' * len(chunk))})",
                [net, *chunk])
            found.update((c, np.frombuffer(d, dtype=np.float32)) for c, d in rows)
        return found

    def put(self, net: str, items: dict[str, np.ndarray]) -> None:
        if self._db is None or not items:
            return
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO features VALUES (?, ?, ?)",
                                 [(net, c, np.ascontiguousarray(v, np.float32).tobytes()) for c, v in items.items()])

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
