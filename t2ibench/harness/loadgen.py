"""The load generator: one level of requests against an OpenAI-images endpoint, every request accounted for.

- **open** loop (server, trace, offline): request i is sent at ``planned[i].at`` seconds after the level's start
  (``None``: at 0, every request at once: offline). Send times are absolute targets from one ``perf_counter``
  origin and the schedule never waits for an answer, so latency, counted from the *scheduled* time, includes
  every wait (no coordinated omission). At ``max_in_flight`` a request waits for a slot: it is marked ``capped``
  and its latency still counts from its scheduled time.
- **closed** loop (concurrency): ``concurrency`` workers, each sending the next request as its previous one ends;
  a request's scheduled time is the moment it was handed out.

Every planned request ends as exactly one :class:`RequestRecord`: an answer, or a classified error (see
:mod:`t2ibench.backends.http.client`). A level is bounded: each request by ``timeout_s`` from its send, the whole
level by its last scheduled time + ``timeout_s`` + 5 s (what is still open then is recorded as a timeout).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Optional, Sequence

from t2ibench.backends.http.client import ImageRequest, make_session, post_images
from t2ibench.errors import UserError
from t2ibench.harness.interrupt import StopRequested

GRACE_S = 5.0  # a level ends by its last scheduled time + timeout_s + this
STOP_POLL_S = 0.05  # how often stop() is asked


@dataclass(frozen=True)
class Planned:
    """One request of a level. ``at``: seconds from the level's start (open loop and trace; None in a closed
    loop or offline, where it is sent as soon as it can be)."""

    index: int
    request: ImageRequest
    prompt_id: str
    seed: int
    at: Optional[float] = None
    slo_ms: Optional[float] = None


@dataclass(frozen=True)
class RequestRecord:
    """How one planned request ended; times in seconds from the level's start (``sent_s`` None: never sent,
    ``first_byte_s`` None: no answer). ``latency_ms`` runs from the scheduled time."""

    index: int
    prompt_id: str
    seed: int
    scheduled_s: float
    sent_s: Optional[float]
    first_byte_s: Optional[float]
    done_s: float
    status: Optional[int]
    error_kind: str
    error: str
    bytes: int
    queue_ms: Optional[float]
    compute_ms: Optional[float]
    batch: Optional[int]
    slo_ms: Optional[float]
    capped: bool
    images: tuple[bytes, ...] = ()

    @property
    def latency_ms(self) -> float:
        return (self.done_s - self.scheduled_s) * 1000.0

    @property
    def ok(self) -> bool:
        return not self.error_kind


@dataclass(frozen=True)
class LevelResult:
    """A level's records (one per planned request that was due, in index order), its start (epoch seconds), its
    length (first scheduled send to last completion) and how many requests waited for the client's cap."""

    records: list[RequestRecord]
    started_at: float
    duration_s: float
    capped: int


def arrival_times(n: int, rate: float, arrival: Literal["poisson", "constant"] = "poisson",
                  seed: int = 0) -> list[float]:
    """``n`` send times (seconds) at ``rate`` requests/s: ``poisson``, the cumulative sums of exponential gaps
    from ``numpy.random.default_rng(seed)`` (the first at the first gap); ``constant``, ``i / rate`` (from 0)."""
    if rate <= 0 or not math.isfinite(rate):
        raise ValueError(f"rate must be a positive number, got {rate}")
    if arrival == "constant":
        return [i / rate for i in range(n)]
    if arrival != "poisson":
        raise ValueError(f"arrival must be poisson or constant, got {arrival!r}")
    import numpy as np

    gaps = np.random.default_rng(seed).exponential(1.0 / rate, size=n)
    return np.cumsum(gaps).tolist()


TRACE_FIELDS = {"t": (int, float), "prompt": (str,), "width": (int,), "height": (int,), "steps": (int,),
                "seed": (int,), "slo_ms": (int, float)}


def trace_requests(path: str | Path, base_dir: str | Path = ".") -> list[dict]:
    """The requests of a JSONL trace (``path`` relative to ``base_dir``): one ``{t, prompt, width, height, steps,
    seed, slo_ms}`` object per line, ``t`` (seconds from the start) required, the rest optional; blank lines are
    skipped. A bad line is a UserError naming ``file:line``."""
    full = Path(base_dir) / Path(path)
    try:
        lines = full.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"trace {full}: cannot read it ({e.__class__.__name__}: {e})") from None
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{full}:{number}"
        try:
            item = json.loads(line)
        except ValueError as e:
            raise UserError(f"{where}: not a JSON object ({e})") from None
        if not isinstance(item, dict):
            raise UserError(f"{where}: a trace line is a JSON object {{t, prompt, width, height, steps, seed, "
                            f"slo_ms}}, got {type(item).__name__}")
        unknown = sorted(set(item) - set(TRACE_FIELDS))
        if unknown:
            raise UserError(f"{where}: unknown field {unknown[0]!r}; fields: {', '.join(TRACE_FIELDS)}")
        if "t" not in item:
            raise UserError(f"{where}: missing 't' (seconds from the start)")
        for key, value in item.items():
            if value is None and key != "t":
                continue
            if isinstance(value, bool) or not isinstance(value, TRACE_FIELDS[key]):
                kinds = " or ".join("number" if t is float else t.__name__ for t in TRACE_FIELDS[key])
                raise UserError(f"{where}: {key} must be {kinds}, got {value!r}")
            if key == "t" and not (math.isfinite(value) and value >= 0):
                raise UserError(f"{where}: t must be a finite number of seconds >= 0, got {value!r}")
            if key in ("width", "height") and (value <= 0 or value % 8):
                raise UserError(f"{where}: {key} must be a positive multiple of 8, got {value}")
            if key in ("steps", "slo_ms") and not value > 0:
                raise UserError(f"{where}: {key} must be > 0, got {value}")
            if key == "seed" and value < 0:
                raise UserError(f"{where}: seed must be >= 0, got {value}")
        out.append(item)
    if not out:
        raise UserError(f"trace {full}: no requests in it")
    return out


def run_level(url: str, planned: Sequence[Planned], *, mode: Literal["open", "closed"],
              concurrency: Optional[int] = None, max_in_flight: int = 1024, timeout_s: float = 600.0,
              api_key: Optional[str] = None, duration_s: Optional[float] = None, warmup: Sequence[Planned] = (),
              stop: Optional[Callable[[], bool]] = None) -> LevelResult:
    """Run one level against ``url`` (module docstring). ``duration_s``: requests due after it (open: ``at`` past
    it; closed: not handed out by then) are not sent and not recorded. ``warmup``: sent first, one at a time,
    never recorded. ``stop()``, asked every 50 ms, aborts the level: open requests are cancelled and
    :class:`~t2ibench.harness.interrupt.StopRequested` is raised."""
    if mode not in ("open", "closed"):
        raise ValueError(f"mode must be open or closed, got {mode!r}")
    if mode == "closed" and not (concurrency and concurrency > 0):
        raise ValueError("a closed loop needs concurrency >= 1")
    level = _Level(url, list(planned), mode, concurrency, max(1, max_in_flight), timeout_s, api_key, duration_s,
                   list(warmup), stop)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(level.run())
    box: list = []  # called from inside an event loop: run the level's own loop in a thread

    def target() -> None:
        try:
            box.append(asyncio.run(level.run()))
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box.append(e)
    thread = threading.Thread(target=target, name="t2ibench-loadgen")
    thread.start()
    thread.join()
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


class _Level:
    def __init__(self, url, planned, mode, concurrency, max_in_flight, timeout_s, api_key, duration_s, warmup, stop):
        self.url, self.mode, self.concurrency = url, mode, concurrency
        self.max_in_flight, self.timeout_s, self.api_key = max_in_flight, timeout_s, api_key
        self.duration_s, self.warmup, self.stop = duration_s, warmup, stop
        if mode == "open":
            due = [(0.0 if p.at is None else float(p.at), p) for p in planned]
            if duration_s is not None:
                due = [(at, p) for at, p in due if at <= duration_s]
            due.sort(key=lambda x: (x[0], x[1].index))
            self.due = due
            self.planned = [p for _, p in due]
        else:
            self.planned = list(planned)
        self.records: dict[int, RequestRecord] = {}
        self.origin = 0.0
        self.tasks: set[asyncio.Task] = set()
        self.waiting: deque[tuple[Planned, float]] = deque()  # open loop: due, waiting for the in-flight cap
        self.closing = self.stopped = False

    # -- one request --------------------------------------------------------------------------------------
    def _unanswered(self, p: Planned, scheduled: float, capped: bool, sent: Optional[float]) -> None:
        """Record ``p`` as a timeout: still open at the level's deadline (or at a stop), or never sent."""
        o = self.origin
        why = "still open at the level's deadline" if sent is not None else \
            "never sent before the level's deadline" + (" (it waited for the client's in-flight cap)" if capped else "")
        self.records[p.index] = RequestRecord(
            p.index, p.prompt_id, p.seed, scheduled - o, None if sent is None else sent - o, None,
            time.perf_counter() - o, None, "timeout", why, 0, None, None, None, p.slo_ms, capped)

    async def _one(self, p: Planned, scheduled: float, capped: bool) -> None:
        """Send ``p`` now (it was scheduled at the perf_counter reading ``scheduled``) and record how it ended."""
        sent = time.perf_counter()
        try:
            r = await post_images(self.session, self.url, p.request, api_key=self.api_key, timeout_s=self.timeout_s)
        except asyncio.CancelledError:  # the level's deadline (or a stop)
            self._unanswered(p, scheduled, capped, sent)
            raise
        o = self.origin
        self.records[p.index] = RequestRecord(
            p.index, p.prompt_id, p.seed, scheduled - o, r.sent - o, None if r.first_byte is None else r.first_byte - o,
            r.done - o, r.status, r.error_kind, r.error, r.bytes, r.queue_ms, r.compute_ms, r.batch, p.slo_ms, capped,
            r.images)

    def _start(self, p: Planned, scheduled: float, capped: bool) -> None:
        """Open loop: send ``p`` in a task of its own; when it ends, the oldest waiting request takes its slot."""
        task = self.loop.create_task(self._one(p, scheduled, capped))
        self.tasks.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if self.waiting and not self.closing:
            p, scheduled = self.waiting.popleft()
            self._start(p, scheduled, True)

    # -- the level ------------------------------------------------------------------------------------------
    async def run(self) -> LevelResult:
        self.loop = asyncio.get_running_loop()
        self.session = make_session(self.max_in_flight)
        try:
            for p in self.warmup:
                self._check_stop()
                await post_images(self.session, self.url, p.request, api_key=self.api_key, timeout_s=self.timeout_s)
            self._check_stop()
            started_at = time.time()
            self.origin = time.perf_counter()
            driver = asyncio.ensure_future(self._open() if self.mode == "open" else self._closed())
            watcher = asyncio.ensure_future(self._watch(driver))
            try:
                await driver
            finally:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
                await self._cancel_all()
            if self.mode == "open":  # the waiting requests, and a task cancelled before it ran
                waited = {p.index for p, _ in self.waiting}
                for at, p in self.due:
                    if p.index not in self.records:
                        self._unanswered(p, self.origin + at, p.index in waited, None)
        finally:
            await self.session.close()
        order = sorted(self.planned, key=lambda p: p.index)
        records = [self.records[p.index] for p in order if p.index in self.records]
        first = min((r.scheduled_s for r in records), default=0.0)
        last = max((r.done_s for r in records), default=first)
        return LevelResult(records, started_at, max(0.0, last - first), sum(r.capped for r in records))

    def _check_stop(self) -> None:
        if self.stop is not None and self.stop():
            raise StopRequested()

    async def _watch(self, driver: asyncio.Future) -> None:
        """Ask ``stop()`` every STOP_POLL_S; on a stop, cancel the driver (it raises StopRequested)."""
        if self.stop is None:
            return
        while not driver.done():
            await asyncio.sleep(STOP_POLL_S)
            if self.stop():
                self.stopped = True
                driver.cancel()
                return

    async def _cancel_all(self) -> None:
        await self._expire()
        if self.stopped:
            raise StopRequested()

    async def _open(self) -> None:
        origin, cap = self.origin, self.max_in_flight
        last = self.due[-1][0] if self.due else 0.0
        deadline = origin + last + self.timeout_s + GRACE_S
        for at, p in self.due:
            target = origin + at
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(self.tasks) < cap:
                self._start(p, target, False)
            else:
                self.waiting.append((p, target))
        while self.tasks:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            await asyncio.wait(set(self.tasks), timeout=remaining)

    async def _closed(self) -> None:
        queue = iter(self.planned)
        end = None if self.duration_s is None else self.origin + self.duration_s
        slots = asyncio.Semaphore(self.max_in_flight)

        async def worker() -> None:
            for p in queue:
                handed = time.perf_counter()
                if end is not None and handed > end:
                    return
                capped = slots.locked()
                async with slots:
                    await self._one(p, handed, capped)
        workers = [asyncio.ensure_future(worker()) for _ in range(self.concurrency)]
        self.tasks.update(workers)
        await asyncio.gather(*workers)

    async def _expire(self) -> None:
        """Cancel what is still open (at the level's deadline, or at a stop): each records itself as a timeout."""
        self.closing = True  # no waiting request starts now
        open_tasks = list(self.tasks)
        for task in open_tasks:
            task.cancel()
        if open_tasks:
            await asyncio.gather(*open_tasks, return_exceptions=True)
