"""The run store: ``run.sqlite`` (WAL) holding configs, calls, cells, metrics,
profile_ops and metadata.

It is the source of truth; every report is regenerated from it. Each image is written
atomically (temporary file, then rename) before its row commits, so a kill at any moment
leaves no row without its image, and each row keeps its image's sha256. One writer per run
directory, enforced by ``flock`` on ``run.lock``, which names its holder's pid and host.

``calls`` has one row per timed pipeline call (its repeats, latency, phases, per-step times,
peak memory, recompiles), a failed one included; each cell points to its call by ``(config_id, call_index)``
and holds no timing of its own (schema 3): :meth:`RunStore.cells` joins them back. A cell that ended without
a call (skipped, or failed before its call) has no call index. A store of an older schema version is upgraded
when it is opened.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from t2ibench.errors import RunLockedError, UserError

SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS configs (
    config_id TEXT PRIMARY KEY, position INTEGER NOT NULL, name TEXT NOT NULL, model TEXT NOT NULL,
    knobs TEXT NOT NULL, is_reference INTEGER NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
    reason TEXT NOT NULL DEFAULT '', load_ms REAL, warmup_ms REAL, recompiles INTEGER NOT NULL DEFAULT 0,
    compile_ms REAL, applied TEXT, export_ms REAL
);
CREATE TABLE IF NOT EXISTS cells (
    config_id TEXT NOT NULL, prompt_id TEXT NOT NULL, seed INTEGER NOT NULL, prompt TEXT NOT NULL,
    category TEXT, status TEXT NOT NULL, error TEXT NOT NULL DEFAULT '', image_path TEXT, image_sha256 TEXT,
    call_index INTEGER, created_at REAL NOT NULL,
    PRIMARY KEY (config_id, prompt_id, seed)
);
CREATE TABLE IF NOT EXISTS calls (
    config_id TEXT NOT NULL, call_index INTEGER NOT NULL, status TEXT NOT NULL, error TEXT NOT NULL DEFAULT '',
    batch_size INTEGER NOT NULL, n_images INTEGER NOT NULL, samples TEXT NOT NULL DEFAULT '[]',
    latency_ms REAL, encode_ms REAL, denoise_ms REAL, decode_ms REAL, step_ms TEXT,
    peak_vram_mb REAL, peak_rss_mb REAL, recompiles INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,
    cache_hit_rate REAL, upscale_ms REAL,
    PRIMARY KEY (config_id, call_index)
);
CREATE TABLE IF NOT EXISTS profile_ops (
    config_id TEXT NOT NULL, rank INTEGER NOT NULL, name TEXT NOT NULL, self_ms REAL NOT NULL,
    total_ms REAL NOT NULL, calls INTEGER NOT NULL, shapes TEXT NOT NULL DEFAULT '', device TEXT NOT NULL,
    PRIMARY KEY (config_id, rank)
);
CREATE TABLE IF NOT EXISTS levels (
    config_id TEXT NOT NULL, level INTEGER NOT NULL, kind TEXT NOT NULL, offered_rate REAL, concurrency INTEGER,
    started_at REAL NOT NULL, duration_s REAL NOT NULL, n_scheduled INTEGER NOT NULL, capped INTEGER NOT NULL DEFAULT 0,
    final INTEGER NOT NULL DEFAULT 1, note TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (config_id, level)
);
CREATE TABLE IF NOT EXISTS requests (
    config_id TEXT NOT NULL, level INTEGER NOT NULL, request_index INTEGER NOT NULL, prompt_id TEXT, seed INTEGER,
    scheduled_s REAL NOT NULL, sent_s REAL, first_byte_s REAL, done_s REAL NOT NULL, latency_ms REAL NOT NULL,
    status INTEGER, error_kind TEXT NOT NULL DEFAULT '', error TEXT NOT NULL DEFAULT '', bytes INTEGER,
    queue_ms REAL, compute_ms REAL, batch INTEGER, slo_ms REAL, capped INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (config_id, level, request_index)
);
CREATE TABLE IF NOT EXISTS metrics (
    config_id TEXT NOT NULL, metric TEXT NOT NULL, value REAL, lo REAL, hi REAL,
    random_weights INTEGER NOT NULL, n INTEGER NOT NULL, extra TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (config_id, metric)
);
"""

# ``levels`` and ``requests`` (load scenarios: one row per level, and per scheduled request) came within schema
# version 2 the same way.

# ``profile_ops`` (the top operators of a config's profiled call) came within schema version 2: a new table
# that older readers ignore. A store written before it gets it when opened for writing; reading one that
# lacks it finds no profiles.

# Columns added within schema versions 1 and 2: a store written before them gets them (empty) when reopened.
# ``applied``: what the engine observed of the config's knobs (JSON); ``cache_hit_rate``: the denoiser
# blocks a step cache skipped in that call, as a fraction of the blocks the call would have run;
# ``upscale_ms``: the call's upscale stage (part of its latency), empty without ``upscale:``; ``export_ms``:
# the part of load_ms an export engine (openvino, onnxruntime) spent exporting the model's networks.
# (The cells of those versions also got ``upscale_ms``; since version 3 a cell reads it from its call.)
_ADDED_COLUMNS = {"configs": {"compile_ms": "REAL", "applied": "TEXT", "export_ms": "REAL"},
                  "calls": {"cache_hit_rate": "REAL", "upscale_ms": "REAL"}}


def _add_columns_of_this_version(conn: sqlite3.Connection) -> None:
    for table, columns in _ADDED_COLUMNS.items():
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns.items():
            if name not in present:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


def _calls_from_cells(conn: sqlite3.Connection) -> None:
    """Version 1 → 2: one ``calls`` row per (config, call index) of the cells, which held the call's figures."""
    conn.execute(
        "INSERT OR IGNORE INTO calls (config_id, call_index, status, error, batch_size, n_images, samples, latency_ms,"
        " encode_ms, denoise_ms, decode_ms, step_ms, peak_vram_mb, peak_rss_mb, recompiles, created_at) "
        "SELECT config_id, call_index, CASE WHEN SUM(status = 'ok') > 0 THEN 'ok' WHEN SUM(status = 'nan') > 0"
        " THEN 'nan' ELSE 'failed' END, MAX(error),"
        " COALESCE(MAX(batch_size), 1), COUNT(*),"
        " COALESCE(MAX(latency_samples), CASE WHEN MAX(latency_ms) IS NULL THEN '[]'"
        " ELSE json_array(MAX(latency_ms)) END),"
        " MAX(latency_ms), MAX(encode_ms), MAX(denoise_ms), MAX(decode_ms), MAX(step_ms), MAX(peak_vram_mb),"
        " MAX(peak_rss_mb), MAX(recompiles), MIN(created_at) "
        "FROM cells WHERE call_index IS NOT NULL AND status IN ('ok', 'nan', 'failed') GROUP BY config_id, call_index"
    )


def _cells_point_to_calls(conn: sqlite3.Connection) -> None:
    """Version 2 → 3: the cells lose the timings they copied from their call (which holds them); the table is
    rebuilt with its identity, status and image columns and the call index. A cell whose call row is missing
    (none is, unless written by hand) first gets one derived from its figures, as from version 1."""
    _calls_from_cells(conn)
    columns = ",".join(CELL_TABLE_COLUMNS)
    conn.execute("DROP TABLE IF EXISTS cells_v3")
    conn.execute(_CELLS_TABLE.replace("cells (", "cells_v3 (", 1))
    conn.execute(f"INSERT INTO cells_v3 ({columns}) SELECT {columns} FROM cells")
    conn.execute("DROP TABLE cells")
    conn.execute("ALTER TABLE cells_v3 RENAME TO cells")


_UPGRADES = {1: _calls_from_cells, 2: _cells_point_to_calls}  # from version → the step to the next


def _upgrade(conn: sqlite3.Connection, version: int) -> None:
    """Bring a store of an older version to SCHEMA_VERSION, in one transaction (a failed step leaves the store
    as it was)."""
    with conn:
        conn.execute("BEGIN")
        _create_tables(conn)  # the missing ones: a table of an older shape stays as it is for the steps
        _add_columns_of_this_version(conn)
        for step in range(version, SCHEMA_VERSION):
            _UPGRADES[step](conn)
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))


def _create_tables(conn: sqlite3.Connection) -> None:
    """The tables of this version that are missing (inside the caller's transaction: no executescript)."""
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


CELL_TABLE_COLUMNS = (
    "config_id", "prompt_id", "seed", "prompt", "category", "status", "error", "image_path", "image_sha256",
    "call_index", "created_at",
)
_CELLS_TABLE = _SCHEMA[_SCHEMA.index("CREATE TABLE IF NOT EXISTS cells ("):].split(";")[0].replace(
    "IF NOT EXISTS ", "")

# The keys of a cell as :meth:`RunStore.cells` returns it (and the columns of cells.csv after ``config``): its
# own columns, and its call's figures (None for a cell without a call; recompiles 0, batch_size its config's).
CELL_COLUMNS = (
    "config_id", "prompt_id", "seed", "prompt", "category", "status", "error", "latency_ms", "encode_ms",
    "denoise_ms", "decode_ms", "step_ms", "peak_vram_mb", "peak_rss_mb", "image_path", "image_sha256",
    "call_index", "batch_size", "latency_samples", "recompiles", "created_at", "upscale_ms",
)
_FROM_CALL = {"latency_ms": "latency_ms", "encode_ms": "encode_ms", "denoise_ms": "denoise_ms",
              "decode_ms": "decode_ms", "step_ms": "step_ms", "peak_vram_mb": "peak_vram_mb",
              "peak_rss_mb": "peak_rss_mb", "batch_size": "batch_size", "latency_samples": "samples",
              "recompiles": "recompiles", "upscale_ms": "upscale_ms"}
_CELL_SELECT = ", ".join(
    f"cells.{c}" if c in CELL_TABLE_COLUMNS
    else "COALESCE(calls.recompiles, 0) AS recompiles" if c == "recompiles"
    else "COALESCE(calls.batch_size, json_extract(configs.knobs, '$.batch_size')) AS batch_size" if c == "batch_size"
    else f"calls.{_FROM_CALL[c]} AS {c}" for c in CELL_COLUMNS)


CALL_COLUMNS = (
    "config_id", "call_index", "status", "error", "batch_size", "n_images", "samples", "latency_ms", "encode_ms",
    "denoise_ms", "decode_ms", "step_ms", "peak_vram_mb", "peak_rss_mb", "recompiles", "created_at", "cache_hit_rate",
    "upscale_ms",
)


def _encode(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, list) else v


@dataclass(frozen=True)
class CallRow:
    """One timed pipeline call: ``samples`` holds every repeat's latency; the figures are the median repeat's."""

    config_id: str
    call_index: int
    status: str  # ok (an image came back) | nan (only non-finite images) | failed (the call raised)
    batch_size: int
    n_images: int  # the cells of this call (a padded last batch has fewer than batch_size)
    error: str = ""
    samples: list[float] | None = None
    latency_ms: float | None = None
    encode_ms: float | None = None
    denoise_ms: float | None = None
    decode_ms: float | None = None
    step_ms: list[float] | None = None
    peak_vram_mb: float | None = None
    peak_rss_mb: float | None = None
    recompiles: int = 0
    created_at: float = 0.0
    cache_hit_rate: float | None = None
    upscale_ms: float | None = None  # the upscale stage's share of latency_ms (None without one)

    def values(self) -> tuple:
        return tuple(_encode(getattr(self, c) if c != "samples" else (self.samples or [])) for c in CALL_COLUMNS)


@dataclass(frozen=True)
class CellRow:
    """One image of a config: its identity, status and image, and the call that made it (its timings are the
    call's; None when it ended without a call: skipped, or failed before one)."""

    config_id: str
    prompt_id: str
    seed: int
    prompt: str
    category: str | None
    status: str  # ok | nan | failed | skipped
    error: str = ""
    image_path: str | None = None
    image_sha256: str | None = None
    call_index: int | None = None
    created_at: float = 0.0

    def values(self) -> tuple:
        return tuple(_encode(getattr(self, c)) for c in CELL_TABLE_COLUMNS)


LEVEL_COLUMNS = ("config_id", "level", "kind", "offered_rate", "concurrency", "started_at", "duration_s",
                 "n_scheduled", "capped", "final", "note")
REQUEST_COLUMNS = (
    "config_id", "level", "request_index", "prompt_id", "seed", "scheduled_s", "sent_s", "first_byte_s", "done_s",
    "latency_ms", "status", "error_kind", "error", "bytes", "queue_ms", "compute_ms", "batch", "slo_ms", "capped",
)
ERROR_KINDS: tuple[str, ...] = ("timeout", "rejected", "http_5xx", "http_4xx", "connection")
"""How a request that got no image ended: no answer in time, a 503 (queue full), another 5xx, a 4xx, no
connection. ``''`` is a response with its image."""


@dataclass(frozen=True)
class LevelRow:
    """One load level of a config (a rate, a concurrency, a search probe): when it ran and what it offered.

    Times are epoch seconds (``started_at``) and seconds (``duration_s``: first scheduled send to last
    completion). ``capped``: requests that waited for the client's in-flight cap (their latency still counts
    from their scheduled time). ``final``: the level the config's row reports (a search's best passing probe)."""

    config_id: str
    level: int
    kind: str
    started_at: float
    duration_s: float
    n_scheduled: int
    offered_rate: float | None = None
    concurrency: int | None = None
    capped: int = 0
    final: bool = True
    note: str = ""

    def values(self) -> tuple:
        return tuple(int(v) if isinstance(v, bool) else v for v in (getattr(self, c) for c in LEVEL_COLUMNS))


@dataclass(frozen=True)
class RequestRow:
    """One scheduled request of a level. Times are seconds from the level's start; ``latency_ms`` runs from
    the *scheduled* send (``done_s - scheduled_s``), so that a late send never hides a wait. ``error_kind`` is
    one of :data:`ERROR_KINDS`, or '' for an answer with its image. ``queue_ms``, ``compute_ms``, ``batch``:
    the server's Server-Timing, when it sent one."""

    config_id: str
    level: int
    request_index: int
    scheduled_s: float
    done_s: float
    latency_ms: float
    prompt_id: str | None = None
    seed: int | None = None
    sent_s: float | None = None
    first_byte_s: float | None = None
    status: int | None = None
    error_kind: str = ""
    error: str = ""
    bytes: int | None = None
    queue_ms: float | None = None
    compute_ms: float | None = None
    batch: int | None = None
    slo_ms: float | None = None
    capped: bool = False

    def values(self) -> tuple:
        return tuple(int(v) if isinstance(v, bool) else v for v in (getattr(self, c) for c in REQUEST_COLUMNS))


def image_relpath(config_id: str, prompt_id: str, seed: int) -> str:
    return f"images/{config_id}/{prompt_id}-{seed}.png"


def profile_relpath(config_id: str) -> str:
    """Where a config's profiler trace lies in the run directory."""
    return f"profiles/{config_id}.json.gz"


def encode_png(pixels) -> bytes:
    """``pixels`` (HxWx3 uint8) as PNG bytes: the one encoding every executor uses, so images are byte-identical."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def write_png_atomic(path: Path, pixels) -> str:
    """Write ``pixels`` (HxWx3 uint8, or PNG bytes from :func:`encode_png`) as PNG at ``path`` atomically;
    returns the file's sha256."""
    return write_atomic(path, pixels if isinstance(pixels, bytes) else encode_png(pixels))


def write_atomic(path: Path, data: bytes) -> str:
    """Write ``data`` at ``path`` atomically (a temporary file, then a rename); returns its sha256."""
    import hashlib

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:  # a full disk: no partial file stays behind, and the error names the file
        tmp.unlink(missing_ok=True)
        if e.filename is None:
            e.filename = str(path)
        raise
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str | None:
    """The sha256 of a file's bytes, or None when it cannot be read."""
    import hashlib

    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class RunStore:
    """Read/write access to one run directory. Use ``RunStore.open(dir, write=True)`` to write."""

    def __init__(self, run_dir: Path, conn: sqlite3.Connection, lock_fd: int | None, lock_note: str = ""):
        self.run_dir = run_dir
        self._conn = conn
        self._lock_fd = lock_fd
        self.lock_note = lock_note  # set when this writer took over a stale lock
        self._mutex = threading.Lock()

    @classmethod
    def open(cls, run_dir: str | Path, *, write: bool = False) -> "RunStore":
        run_dir = Path(run_dir)
        db = run_dir / "run.sqlite"
        lock_fd, lock_note = None, ""
        if write:
            run_dir.mkdir(parents=True, exist_ok=True)
            lock_fd, lock_note = _acquire_lock(run_dir)
        elif not db.is_file():
            raise UserError(f"'{run_dir}' is not a t2ibench run directory (no run.sqlite)")
        conn = sqlite3.connect(db, check_same_thread=False, timeout=30)
        conn.row_factory = sqlite3.Row
        version = _stored_version(conn)
        if version is not None and version > SCHEMA_VERSION:
            conn.close()
            if lock_fd is not None:
                os.close(lock_fd)
            raise UserError(f"'{run_dir}' has store schema_version {version}, newer than this t2ibench's "
                            f"{SCHEMA_VERSION}; upgrade t2ibench to read it")
        if write:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        if write or (version is not None and version < SCHEMA_VERSION):
            try:
                _upgrade(conn, version or SCHEMA_VERSION)
            except sqlite3.OperationalError as e:
                conn.close()
                if lock_fd is not None:
                    os.close(lock_fd)
                raise UserError(f"'{run_dir}' holds a store of schema_version {version} that cannot be upgraded "
                                f"in place ({e}); copy it somewhere writable") from None
        return cls(run_dir, conn, lock_fd, lock_note)

    def close(self) -> None:
        self._conn.close()
        if self._lock_fd is not None:
            os.ftruncate(self._lock_fd, 0)  # a lock file that still names a holder was left by an unclean exit
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- meta --------------------------------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        try:
            row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        except sqlite3.OperationalError:
            return default
        return json.loads(row["value"]) if row else default

    def set_meta(self, key: str, value: Any) -> None:
        with self._mutex, self._conn:
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    # -- configs -----------------------------------------------------------------------------------
    def add_config(self, position: int, config) -> None:
        """Register a config (keeps its recorded status when it is already there)."""
        with self._mutex, self._conn:
            self._conn.execute(
                "INSERT INTO configs (config_id, position, name, model, knobs, is_reference) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT(config_id) DO UPDATE SET position=excluded.position, name=excluded.name",
                (config.config_id, position, config.name, config.model,
                 config.knobs.model_dump_json(), int(config.is_reference)),
            )

    def update_config(self, config_id: str, **fields: Any) -> None:
        if not fields:
            return
        cols = ", ".join(f"{k}=?" for k in fields)
        with self._mutex, self._conn:
            self._conn.execute(f"UPDATE configs SET {cols} WHERE config_id=?", (*fields.values(), config_id))

    def configs(self) -> list[dict]:
        rows = self._conn.execute("SELECT * FROM configs ORDER BY position").fetchall()
        return [dict(r) | {"knobs": json.loads(r["knobs"]),
                           "applied": json.loads(r["applied"]) if "applied" in r.keys() and r["applied"] else {}}
                for r in rows]

    # -- cells -------------------------------------------------------------------------------------
    def done_cells(self, config_id: str) -> set[tuple[str, int]]:
        """Cells that need no work: ok with an image whose bytes match the stored sha256, or nan.
        Failed and skipped cells, and images missing or changed (truncated by a full disk), are redone."""
        done, check = set(), []
        for r in self._conn.execute(
            "SELECT prompt_id, seed, status, image_path, image_sha256 FROM cells "
            "WHERE config_id=? AND status IN ('ok','nan')", (config_id,),
        ):
            if r["status"] == "nan":
                done.add((r["prompt_id"], r["seed"]))
            elif r["image_path"]:
                check.append(r)
        if check:
            from concurrent.futures import ThreadPoolExecutor

            paths = [self.run_dir / r["image_path"] for r in check]
            with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # hashlib frees the GIL
                shas = list(pool.map(file_sha256, paths, chunksize=64))
            for r, sha in zip(check, shas):
                if sha is not None and (r["image_sha256"] is None or sha == r["image_sha256"]):
                    done.add((r["prompt_id"], r["seed"]))
        return done

    def next_call_index(self, config_id: str) -> int:
        """The first unused call index of a config, so calls stay distinct across resumed sessions."""
        row = self._conn.execute(
            "SELECT MAX(i) FROM (SELECT MAX(call_index) AS i FROM cells WHERE config_id=? "
            "UNION ALL SELECT MAX(call_index) FROM calls WHERE config_id=?)", (config_id, config_id)).fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def put_cells(self, rows: Iterable[CellRow], call: "CallRow | None" = None) -> None:
        """Commit cells, and the call that made them, in one transaction."""
        with self._mutex, self._conn:
            self._put_cells(rows, call)

    def _put_cells(self, rows: Iterable[CellRow], call: "CallRow | None") -> None:
        if call is not None:
            self._conn.execute(f"INSERT OR REPLACE INTO calls ({','.join(CALL_COLUMNS)}) "
                               f"VALUES ({','.join('?' * len(CALL_COLUMNS))})", call.values())
        self._conn.executemany(
            f"INSERT OR REPLACE INTO cells ({','.join(CELL_TABLE_COLUMNS)}) "
            f"VALUES ({','.join('?' * len(CELL_TABLE_COLUMNS))})", [r.values() for r in rows])

    def cells(self) -> list[dict]:
        """Every cell, with its call's figures (the keys of :data:`CELL_COLUMNS`), by config position, prompt
        and seed."""
        rows = self._conn.execute(
            f"SELECT {_CELL_SELECT} FROM cells JOIN configs USING (config_id) "
            "LEFT JOIN calls ON calls.config_id = cells.config_id AND calls.call_index = cells.call_index "
            "ORDER BY configs.position, cells.prompt_id, cells.seed"
        ).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            for key in ("step_ms", "latency_samples"):
                d[key] = json.loads(d[key]) if d[key] else []
            out.append(d)
        return out

    # -- calls -------------------------------------------------------------------------------------
    def calls(self) -> list[dict]:
        rows = self._conn.execute(
            "SELECT calls.* FROM calls JOIN configs USING (config_id) ORDER BY configs.position, call_index"
        ).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["samples"] = json.loads(d["samples"]) if d["samples"] else []
            d["step_ms"] = json.loads(d["step_ms"]) if d["step_ms"] else []
            out.append(d)
        return out

    # -- profiles ----------------------------------------------------------------------------------
    def put_profile_ops(self, config_id: str, ops: Iterable[Any]) -> None:
        """Replace a config's profiled operators (``ProfiledOp``s, the costliest first: rank 0)."""
        with self._mutex, self._conn:
            self._conn.execute("DELETE FROM profile_ops WHERE config_id=?", (config_id,))
            self._conn.executemany(
                "INSERT INTO profile_ops (config_id, rank, name, self_ms, total_ms, calls, shapes, device) "
                "VALUES (?,?,?,?,?,?,?,?)",
                [(config_id, rank, op.name, op.self_ms, op.total_ms, op.calls, op.shapes, op.device)
                 for rank, op in enumerate(ops)])

    def profile_ops(self) -> dict[str, list[dict]]:
        """config_id → its profiled operators by rank (none in a store written before profiles existed)."""
        try:
            rows = self._conn.execute("SELECT * FROM profile_ops ORDER BY config_id, rank").fetchall()
        except sqlite3.OperationalError:  # no such table: an older store opened read-only
            return {}
        out: dict[str, list[dict]] = {}
        for r in rows:
            out.setdefault(r["config_id"], []).append(dict(r))
        return out

    # -- load levels and their requests ---------------------------------------------------------------
    def put_level(self, level: LevelRow, requests: Iterable[RequestRow],
                  served: Iterable[tuple[CallRow, CellRow]] = ()) -> None:
        """Commit one level, its requests, and the cells it served each with its call, in one transaction,
        replacing an earlier try of that level (a level is atomic: a killed run reruns it whole)."""
        with self._mutex, self._conn:
            self._conn.execute("DELETE FROM requests WHERE config_id=? AND level=?", (level.config_id, level.level))
            self._conn.execute(f"INSERT OR REPLACE INTO levels ({','.join(LEVEL_COLUMNS)}) "
                               f"VALUES ({','.join('?' * len(LEVEL_COLUMNS))})", level.values())
            self._conn.executemany(f"INSERT INTO requests ({','.join(REQUEST_COLUMNS)}) "
                                   f"VALUES ({','.join('?' * len(REQUEST_COLUMNS))})", [r.values() for r in requests])
            for call, cell in served:
                self._put_cells([cell], call)

    def clear_levels(self, config_id: str) -> None:
        """Forget a config's levels and requests (its load is about to be measured again, from scratch)."""
        with self._mutex, self._conn:
            self._conn.execute("DELETE FROM requests WHERE config_id=?", (config_id,))
            self._conn.execute("DELETE FROM levels WHERE config_id=?", (config_id,))

    def levels(self) -> list[dict]:
        """Every recorded level (none in a store written before load scenarios), by config position and level."""
        try:
            rows = self._conn.execute("SELECT levels.* FROM levels JOIN configs USING (config_id) "
                                      "ORDER BY configs.position, level").fetchall()
        except sqlite3.OperationalError:  # an older store opened read-only
            return []
        return [dict(r) | {"final": bool(r["final"])} for r in rows]

    def requests(self, config_id: str | None = None) -> list[dict]:
        """The recorded requests (of one config, or all), by config position, level and index."""
        where, args = ("WHERE requests.config_id=?", (config_id,)) if config_id else ("", ())
        try:
            rows = self._conn.execute(
                f"SELECT requests.* FROM requests JOIN configs USING (config_id) {where} "
                "ORDER BY configs.position, level, request_index", args).fetchall()
        except sqlite3.OperationalError:
            return []
        return [dict(r) | {"capped": bool(r["capped"])} for r in rows]

    # -- metrics -----------------------------------------------------------------------------------
    def put_metrics(self, results: Iterable[Any]) -> None:
        with self._mutex, self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO metrics VALUES (?,?,?,?,?,?,?,?)",
                [(r.config_id, r.metric, r.value, r.lo, r.hi, int(r.random_weights), r.n, json.dumps(r.extra))
                 for r in results],
            )

    def metrics(self) -> list[dict]:
        rows = self._conn.execute("SELECT * FROM metrics ORDER BY config_id, metric").fetchall()
        return [dict(r) | {"extra": json.loads(r["extra"]), "random_weights": bool(r["random_weights"])} for r in rows]


def _stored_version(conn: sqlite3.Connection) -> int | None:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    except sqlite3.OperationalError:  # a new, empty database
        return None
    return int(json.loads(row["value"])) if row else None


def _acquire_lock(run_dir: Path) -> tuple[int, str]:
    """Take ``run.lock`` (flock) and write ``<pid> <host>`` in it; returns the fd and a note, empty unless a
    stale lock was taken over.

    The flock is the truth about liveness on one host: the kernel drops it when its process dies. The
    file's content tells the rest. A file that names a holder although its flock is free was left by a
    run that ended uncleanly (killed), or was copied from another machine. A flock still held while the
    file names a process of this host that no longer exists belongs to a leftover (a forked child that
    inherited it); the lock file is then replaced. Any other held flock is another live writer.
    """
    path = run_dir / "run.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    holder = _lock_holder(fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        note = ""
        if holder is not None and holder != (os.getpid(), socket.gethostname()):
            note = (f"note: took over the lock of '{run_dir}' left by {_describe(holder)}, which no longer holds "
                    "it (a run that was killed, or a directory copied from another machine)")
    except BlockingIOError:
        os.close(fd)
        locked = RunLockedError(
            f"run directory '{run_dir}' is in use by another t2ibench process "
            f"({_describe(holder) if holder else 'pid unknown'}); wait for it to finish or use another --out")
        if holder is None or holder[1] != socket.gethostname() or _pid_alive(holder[0]):
            raise locked from None
        path.unlink(missing_ok=True)  # the new file's flock is ours; the leftover keeps the old one
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:  # another process took it over first
            raise locked from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise locked from None
        note = (f"note: took over the lock of '{run_dir}' from {_describe(holder)}, which no longer exists "
                "(a process it started still held the lock)")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    return fd, note


def _lock_holder(fd: int) -> tuple[int, str] | None:
    """(pid, host) written in a lock file; an old file holding only a pid is on this host."""
    parts = os.pread(fd, 512, 0).decode(errors="replace").split()
    if not parts or not parts[0].isdigit():
        return None
    return int(parts[0]), parts[1] if len(parts) > 1 else socket.gethostname()


def _describe(holder: tuple[int, str]) -> str:
    pid, host = holder
    return f"pid {pid}" + ("" if host == socket.gethostname() else f" on host '{host}'")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True
