"""Test-only OpenAI-images servers, served by a real uvicorn on 127.0.0.1 and a free port.

:class:`ImagesApp` is a raw ASGI app whose behaviour the tests control and observe: a delay per request (fixed,
or a function of the request's body, so that a known distribution is keyed by the request's seed), a stall
("nothing completes between a and a + d seconds after ``reset()``"), a capacity (requests computed at once) with a
bounded queue whose overflow is answered 503 + Retry-After, and the highest concurrency it saw. Each image is a
deterministic PNG of (prompt, seed, size, steps): :func:`expected_pixels` gives its pixels.
:class:`Served` runs an app under ``uvicorn.Server`` in a background thread.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import threading
import time
from typing import Callable, Optional, Union

import numpy as np
from PIL import Image  # imported here, not in the first request (it holds the GIL the client shares)

MODEL_ID = "test-images"


def expected_pixels(prompt: str, seed: int, width: int, height: int, steps: Optional[int] = None) -> np.ndarray:
    """The pixels :class:`ImagesApp` answers for one image."""
    digest = hashlib.sha256(f"{prompt}|{seed}|{width}x{height}|{steps}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


Delay = Union[float, Callable[[dict], float]]


class ImagesApp:
    """``POST /v1/images/generations``, ``GET /v1/models``, ``GET /health``, with controllable timing.

    ``delay``: seconds of "compute" per request (or ``f(body) -> seconds``). ``stall``: ``(a, d)``: a request
    that arrives or finishes its compute in ``[a, a + d)`` (seconds after ``reset()``) is held until ``a + d``.
    ``capacity``: requests computed at once (None: unbounded); ``queue``: requests waiting beyond it before a
    503. ``api_key``: required as a Bearer token (else 401). A prompt ``status=N…`` is answered with status N.
    Observed: ``arrivals`` (seconds after ``reset()``), ``max_concurrency``, ``rejected``, ``completed``."""

    def __init__(self, delay: Delay = 0.0, *, stall: Optional[tuple[float, float]] = None,
                 capacity: Optional[int] = None, queue: int = 0, api_key: Optional[str] = None):
        self.delay, self.stall, self.capacity, self.queue = delay, stall, capacity, queue
        self.api_key = api_key
        self._sem: Optional[asyncio.Semaphore] = None
        self.reset()

    def reset(self) -> None:
        self.t0 = time.perf_counter()
        self.arrivals: list[float] = []
        self.active = self.max_concurrency = self.waiting = 0
        self.rejected = self.completed = 0

    async def _stalled(self) -> None:
        if self.stall is None:
            return
        a, d = self.stall
        now = time.perf_counter() - self.t0
        if a <= now < a + d:
            await asyncio.sleep(a + d - now)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if self.api_key is not None and (b"authorization", f"Bearer {self.api_key}".encode()) not in scope["headers"]:
            return await _json(send, 401, _error("a valid API key is required", 401))
        if method == "GET" and path == "/health":
            return await _json(send, 200, {"status": "ok"})
        if method == "GET" and path == "/v1/models":
            return await _json(send, 200, {"object": "list", "data": [{"id": MODEL_ID, "object": "model"}]})
        if method != "POST" or path != "/v1/images/generations":
            return await _json(send, 404, _error(f"no route {method} {path}", 404))
        try:
            req = json.loads(body)
            width, height = (int(v) for v in req.get("size", "64x64").split("x"))
            prompt, seed, n = str(req["prompt"]), int(req.get("seed", 0)), int(req.get("n", 1))
        except (ValueError, KeyError, TypeError) as e:
            return await _json(send, 400, _error(f"bad request: {e}", 400))
        self.arrivals.append(time.perf_counter() - self.t0)
        arrived = time.perf_counter()
        if prompt.startswith("status="):
            code = int(prompt[len("status="):].split(",")[0])
            return await _json(send, code, _error(f"asked for {code}", code), [(b"server-timing", b"queue;dur=0")])
        if self.capacity is not None and self.active + self.waiting >= self.capacity + self.queue:
            self.rejected += 1
            return await _json(send, 503, _error("queue full", 503), [(b"retry-after", b"1")])
        if self._sem is None and self.capacity is not None:
            self._sem = asyncio.Semaphore(self.capacity)
        self.waiting += 1
        try:
            if self._sem is not None:
                await self._sem.acquire()
        finally:
            self.waiting -= 1
        self.active += 1
        self.max_concurrency = max(self.max_concurrency, self.active)
        try:
            queued = time.perf_counter()
            await self._stalled()
            delay = self.delay(req) if callable(self.delay) else self.delay
            if delay > 0:
                await asyncio.sleep(delay)
            await self._stalled()
            steps = req.get("num_inference_steps")
            images = [png(expected_pixels(prompt, seed + i, width, height, steps)) for i in range(n)]
            computed = time.perf_counter()
        finally:
            self.active -= 1
            if self._sem is not None:
                self._sem.release()
        self.completed += 1
        timing = (f"queue;dur={(queued - arrived) * 1000:.3f}, compute;dur={(computed - queued) * 1000:.3f}, "
                  "batch;desc=1")
        answer = {"created": int(time.time()), "data": [{"b64_json": base64.b64encode(p).decode()} for p in images]}
        await _json(send, 200, answer, [(b"server-timing", timing.encode())])


def _error(message: str, code: int) -> dict:
    return {"error": {"message": message, "type": "invalid_request_error" if code < 500 else "server_error",
                      "code": code}}


async def _json(send, status: int, data: dict, headers: list = ()) -> None:
    body = json.dumps(data).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


class Served:
    """``with Served(app) as url:`` serves ``app`` under a real uvicorn on 127.0.0.1, any free port."""

    def __init__(self, app):
        self.app = app
        self.server = None
        self.thread: Optional[threading.Thread] = None

    def __enter__(self) -> str:
        import uvicorn

        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off",
                                loop="asyncio", access_log=False, timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="test-uvicorn", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
