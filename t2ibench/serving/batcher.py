"""The bounded request queue and the one generation thread, with dynamic batching.

The asyncio side only calls :meth:`Batcher.submit` (which never blocks) and awaits the returned future. One
thread runs :meth:`Batcher.work`: it takes the oldest request, adds compatible ones (same :class:`Params`) until
``max_batch_size`` images or ``max_wait_ms`` have passed, and hands their images to the runner in calls whose sizes
:class:`CallSizes` allows, one seed per image; a request is answered as soon as its last image is made.
"""

from __future__ import annotations

import collections
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Optional


@dataclass(frozen=True)
class Params:
    """What requests must share to be batched into one pipeline call."""

    width: int
    height: int
    steps: int
    guidance_scale: float
    negative_prompt: Optional[str]


@dataclass(frozen=True)
class Result:
    """A request's answer: PNG bytes, one per seed; its time queued and computing (ms); the images of its call."""

    images: tuple[bytes, ...]
    seeds: tuple[int, ...]
    queue_ms: float
    compute_ms: float
    batch: int


class QueueFull(Exception):
    """The queue holds ``max_queue`` requests: the answer is 503 with Retry-After."""


class GenerationError(Exception):
    """The pipeline call of a request failed (or made a non-finite image): the answer is 500.
    ``timing``: (queue_ms, compute_ms, batch) when it ran."""

    def __init__(self, message: str, timing: Optional[tuple[float, float, int]] = None):
        super().__init__(message)
        self.timing = timing


class Stopped(Exception):
    """The server stopped before this request ran."""


# runner(params, prompts, seeds) -> per image its PNG bytes, or a str saying why it failed; raises when the call fails
Runner = Callable[[Params, list, list], list]


@dataclass
class Job:
    prompt: str
    seeds: tuple[int, ...]
    params: Params
    submitted: float  # time.perf_counter()
    future: Future = field(default_factory=Future)
    images: dict = field(default_factory=dict)  # seed index -> PNG bytes
    compute_ms: float = 0.0
    batch: int = 0
    error: str = ""


class Batcher:
    """A bounded FIFO of requests served by one worker thread (see the module docstring)."""

    def __init__(self, *, max_batch_size: int = 1, max_wait_ms: float = 0.0, max_queue: int = 64,
                 on_call: Optional[Callable[[int, float], None]] = None):
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.on_call = on_call  # (images in the call, its wall time in s): for /metrics
        self._queue: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self.ready = False
        self.sizes = CallSizes(max_batch_size)
        self.compute_s_per_image = 0.0  # a running mean, for Retry-After

    @property
    def depth(self) -> int:
        """Requests waiting (not yet taken by the worker)."""
        return len(self._queue)

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called: new requests are refused (503)."""
        return self._stopping

    def submit(self, prompt: str, seeds: tuple[int, ...], params: Params) -> Future:
        """Queue one request; raises :class:`QueueFull` or :class:`Stopped`. Never blocks."""
        job = Job(prompt, tuple(seeds), params, time.perf_counter())
        with self._cond:
            if self._stopping:
                raise Stopped("the server is stopping")
            if len(self._queue) >= self.max_queue:  # requests that timed out while queued leave room
                self._queue = collections.deque(j for j in self._queue if not j.future.cancelled())
            if len(self._queue) >= self.max_queue:
                raise QueueFull(f"the queue is full ({self.max_queue} requests waiting)")
            self._queue.append(job)
            self._cond.notify()
        return job.future

    def retry_after_s(self) -> int:
        """A guess of when the queue has room: the queued images × the mean compute time of one (at least 1 s)."""
        images = sum(len(j.seeds) for j in list(self._queue))
        return max(1, int(round(images * self.compute_s_per_image / max(1, self.max_batch_size))))

    def stop(self) -> None:
        """Refuse new requests; the worker finishes the queued ones, then :meth:`work` returns."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def cancel_queued(self, reason: str) -> int:
        """Fail every request still queued (a drain that ran out of time); returns how many."""
        with self._cond:
            jobs = list(self._queue)
            self._queue.clear()
        for job in jobs:
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(Stopped(reason))
        return len(jobs)

    # -- the worker thread ---------------------------------------------------------------------
    def work(self, runner: Runner, sizes: "CallSizes | int") -> None:
        """Serve the queue with ``runner`` in this thread until :meth:`stop` and the queue is empty. ``sizes``: how
        many images one runner call may hold (an int: any number up to it)."""
        self.sizes = sizes if isinstance(sizes, CallSizes) else CallSizes(sizes)
        self.ready = True
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._run(batch, runner)

    def _take(self) -> Optional[Job]:
        """The oldest request not cancelled by its caller (a timed-out one), marked running; None when empty."""
        while self._queue:
            job = self._queue.popleft()
            if job.future.set_running_or_notify_cancel():
                return job
        return None

    def _next_batch(self) -> Optional[list[Job]]:
        with self._cond:
            first = None
            while first is None:
                first = self._take()
                if first is None:
                    if self._stopping:
                        return None
                    self._cond.wait()
            # requests with parameters whose calls hold one image are not grouped: nothing would be gained
            limit = min(self.max_batch_size, max(self.sizes.allowed(first.params)))
            batch, images = [first], len(first.seeds)
            deadline = first.submitted + self.max_wait_s  # a request that already waited in the queue waits no more
            while images < limit:
                for job in list(self._queue):  # compatible requests that fit, oldest first
                    if job.params == first.params and images + len(job.seeds) <= limit:
                        self._queue.remove(job)
                        if job.future.set_running_or_notify_cancel():
                            batch.append(job)
                            images += len(job.seeds)
                left = deadline - time.perf_counter()
                if images >= limit or left <= 0 or self._stopping:
                    break
                self._cond.wait(left)
            return batch

    def _run(self, batch: list[Job], runner: Runner) -> None:
        taken = time.perf_counter()
        work = [(job, i, s) for job in batch for i, s in enumerate(job.seeds)]
        left = {id(job): len(job.seeds) for job in batch}  # images still to make, per request
        start = 0
        for size in self.sizes.split(len(work), batch[0].params):
            part, start = work[start:start + size], start + size
            jobs = {id(job): job for job, _, _ in part}
            live = [w for w in part if not w[0].error]
            if live:
                self._call(runner, live, {id(w[0]): w[0] for w in live})
            for job, _, _ in part:
                left[id(job)] -= 1
            for job in jobs.values():  # a request is answered as soon as its last image is made
                if left[id(job)] == 0:
                    self._answer(job, taken)

    def _call(self, runner: Runner, part: list, jobs: dict) -> None:
        t0 = time.perf_counter()
        try:
            pngs = runner(part[0][0].params, [job.prompt for job, _, _ in part], [s for _, _, s in part])
        except Exception as e:  # the call's requests fail; the server goes on
            lines = str(e).strip().splitlines()
            error = f"{type(e).__name__}: {lines[0] if lines else ''}"[:500]
            pngs = None
        wall = time.perf_counter() - t0
        if self.on_call is not None:
            self.on_call(len(part), wall)
        self.compute_s_per_image += (wall / len(part) - self.compute_s_per_image) * 0.2
        for job in jobs.values():
            job.compute_ms += wall * 1000.0
            job.batch = max(job.batch, len(part))
            if pngs is None:
                job.error = error
        if pngs is not None:
            for (job, i, _), png in zip(part, pngs):
                if isinstance(png, str):  # that image failed (non-finite pixels): its request fails
                    job.error = job.error or png
                job.images[i] = png

    @staticmethod
    def _answer(job: Job, taken: float) -> None:
        queue_ms = (taken - job.submitted) * 1000.0
        if job.error:
            job.future.set_exception(GenerationError(job.error, (queue_ms, job.compute_ms, job.batch)))
        else:
            job.future.set_result(Result(tuple(job.images[i] for i in range(len(job.seeds))), job.seeds,
                                         queue_ms, job.compute_ms, job.batch))


@dataclass(frozen=True)
class CallSizes:
    """How many images one pipeline call may hold.

    ``limit`` alone: any number up to it. With ``verified`` (batched calls must equal lone ones, bit for bit):
    only those sizes, and only for requests with parameters ``params`` (what the warm-up probe checked); other
    sizes and parameters run smaller calls, down to one image per call.
    """

    limit: int
    verified: Optional[tuple[int, ...]] = None
    params: Optional[Params] = None

    def allowed(self, params: Params) -> tuple[int, ...]:
        if self.verified is None:
            return tuple(range(1, self.limit + 1))
        if params != self.params:
            return (1,)
        return (1, *sorted(v for v in self.verified if 1 < v <= self.limit))

    def split(self, n: int, params: Params) -> list[int]:
        """``n`` images as call sizes: the largest allowed first (no padding)."""
        allowed = self.allowed(params)
        out = []
        while n > 0:
            size = max(s for s in allowed if s <= n)
            out.append(size)
            n -= size
        return out

    def most(self, params: Params) -> int:
        return max(self.allowed(params))
