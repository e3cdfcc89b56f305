"""The one async client every HTTP caller uses (the ``http`` backend, the load generator): one OpenAI Images
request, timed and classified.

:func:`post_images` never raises for HTTP or network trouble: an answer without its images comes back as an
:class:`ImageResponse` whose ``error_kind`` is one of ``timeout`` (no answer within ``timeout_s``), ``rejected``
(503: the server's queue is full), ``http_5xx`` (another 5xx, or a 200 whose body is not an images answer),
``http_4xx`` or ``connection`` (refused, reset, closed mid-answer). aiohttp is imported inside the functions.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any, Optional

PATH = "/v1/images/generations"
ERROR_KINDS: tuple[str, ...] = ("timeout", "rejected", "http_5xx", "http_4xx", "connection")  # store.ERROR_KINDS


class EndpointError(RuntimeError):
    """An answer without its images where the caller needs them (the http engine): ``response`` says how."""

    def __init__(self, message: str, response: "ImageResponse"):
        super().__init__(message)
        self.response = response


@dataclass(frozen=True)
class ImageRequest:
    """One ``POST /v1/images/generations``: ``n`` images of ``width`` x ``height`` (seeds seed, seed+1, …)."""

    prompt: str
    width: int
    height: int
    seed: Optional[int] = None
    steps: Optional[int] = None
    guidance_scale: Optional[float] = None
    negative_prompt: Optional[str] = None
    n: int = 1
    model: str = ""

    def body(self) -> dict:
        """The JSON body (unset extensions are left out, so that any compatible server takes it)."""
        out: dict[str, Any] = {"prompt": self.prompt, "n": self.n, "size": f"{self.width}x{self.height}",
                               "response_format": "b64_json"}
        if self.model:
            out["model"] = self.model
        if self.seed is not None:
            out["seed"] = self.seed
        if self.steps is not None:
            out["num_inference_steps"] = self.steps
        if self.guidance_scale is not None:
            out["guidance_scale"] = self.guidance_scale
        if self.negative_prompt is not None:
            out["negative_prompt"] = self.negative_prompt
        return out


@dataclass(frozen=True)
class ImageResponse:
    """How one request ended. ``sent``, ``first_byte``, ``done``: ``time.perf_counter()`` readings (``first_byte``:
    the answer's headers arrived; None without an answer). ``error_kind``: '' for an answer with its images.
    ``queue_ms``, ``compute_ms``, ``batch``: the server's ``Server-Timing``, where it sent one."""

    status: Optional[int]
    error_kind: str
    error: str
    sent: float
    first_byte: Optional[float]
    done: float
    bytes: int = 0
    queue_ms: Optional[float] = None
    compute_ms: Optional[float] = None
    batch: Optional[int] = None
    images: tuple[bytes, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.error_kind


def parse_server_timing(header: Optional[str]) -> tuple[Optional[float], Optional[float], Optional[int]]:
    """``queue;dur=12.5, compute;dur=300, batch;desc=4`` → ``(12.5, 300.0, 4)``; what is missing or malformed is
    None (other metrics are ignored)."""
    queue = compute = batch = None
    if not header:
        return queue, compute, batch
    for metric in header.split(","):
        name, *params = (p.strip() for p in metric.split(";"))
        values = dict(p.partition("=")[::2] for p in params)
        try:
            if name == "queue" and "dur" in values:
                queue = float(values["dur"])
            elif name == "compute" and "dur" in values:
                compute = float(values["dur"])
            elif name == "batch" and "desc" in values:
                batch = int(values["desc"].strip('"'))
        except ValueError:
            continue
    return queue, compute, batch


def decode_png(data: bytes):
    """PNG bytes → HxWx3 uint8 pixels."""
    import io

    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def make_session(max_in_flight: int):
    """One aiohttp session for a level or an engine: its connector holds at most ``max_in_flight`` connections
    (kept alive), so that no request queues inside aiohttp unseen. Call it inside a running event loop."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=max_in_flight, limit_per_host=0, ttl_dns_cache=300)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))


def _message(body: bytes, status: int) -> str:
    """The error message of an error answer (the OpenAI ``{"error": {"message"}}`` shape, else its text)."""
    try:
        data = json.loads(body)
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict) and error.get("message"):
            return f"HTTP {status}: {error['message']}"[:500]
        if isinstance(data, dict) and data.get("detail"):
            return f"HTTP {status}: {data['detail']}"[:500]
    except (ValueError, UnicodeDecodeError):
        pass
    text = body[:300].decode("utf-8", "replace").strip()
    return f"HTTP {status}" + (f": {text}" if text else "")


def _kind(status: int) -> str:
    if status == 503:
        return "rejected"
    return "http_5xx" if status >= 500 else "http_4xx"


def _images(body: bytes) -> tuple[bytes, ...]:
    """The PNG bytes of a 200 answer; ValueError when the body is not an images answer."""
    data = json.loads(body)
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise ValueError("the answer has no 'data' list of images")
    out = []
    for item in items:
        b64 = item.get("b64_json") if isinstance(item, dict) else None
        if not isinstance(b64, str):
            raise ValueError("an image of the answer has no 'b64_json'")
        out.append(base64.b64decode(b64, validate=True))
    return tuple(out)


async def post_images(session, url: str, request: ImageRequest, *, api_key: Optional[str] = None,
                      timeout_s: float = 600.0) -> ImageResponse:
    """POST ``request`` to ``url`` (the server's base, ``http://127.0.0.1:8000``) + ``/v1/images/generations``.

    ``timeout_s`` bounds the whole request from its send. Never raises for HTTP or network trouble (see the
    module docstring); cancellation propagates."""
    import asyncio

    import aiohttp

    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    data = json.dumps(request.body()).encode()
    first_byte = None
    status: Optional[int] = None
    timing: tuple = (None, None, None)
    sent = time.perf_counter()
    try:
        async with session.post(url.rstrip("/") + PATH, data=data, headers=headers,
                                timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            first_byte = time.perf_counter()
            status = resp.status
            timing = parse_server_timing(resp.headers.get("Server-Timing"))
            body = await resp.read()
    except asyncio.TimeoutError:  # aiohttp's timeouts are asyncio.TimeoutError (its ServerTimeoutError too)
        return ImageResponse(status, "timeout", f"no answer within {timeout_s:g} s", sent, first_byte,
                             time.perf_counter(), 0, *timing)
    except (aiohttp.ClientError, OSError) as e:
        return ImageResponse(status, "connection", f"{type(e).__name__}: {e}"[:500], sent, first_byte,
                             time.perf_counter(), 0, *timing)
    done = time.perf_counter()
    if status != 200:
        return ImageResponse(status, _kind(status), _message(body, status), sent, first_byte, done, len(body),
                             *timing)
    try:
        images = _images(body)
    except (ValueError, UnicodeDecodeError) as e:  # a 200 that is not an images answer: the server's fault
        return ImageResponse(status, "http_5xx", f"bad answer: {e}"[:500], sent, first_byte, done, len(body),
                             *timing)
    return ImageResponse(status, "", "", sent, first_byte, done, len(body), *timing, images)
