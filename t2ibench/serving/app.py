"""The ASGI app: the OpenAI Images API over a :class:`~t2ibench.serving.batcher.Batcher`.

``POST /v1/images/generations`` takes ``prompt``, ``n``, ``size`` ("WxH"), ``response_format`` (``b64_json``
only) and the extensions vllm-omni and SGLang accept (``seed``, ``num_inference_steps``, ``guidance_scale``,
``negative_prompt``). Images of one request have seeds ``seed, seed+1, …``; without ``seed`` the server picks
one and says which in each ``data`` item. Errors are ``{"error": {"message", "type", "param", "code"}}``.
Every response carries ``Server-Timing: queue;dur=…, compute;dur=…, batch;desc=N`` (zeros where unknown).
"""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations (Request) at definition

import asyncio
import base64
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from t2ibench.serving import ServeOptions
from t2ibench.serving.batcher import Batcher, GenerationError, Params, QueueFull, Stopped

IMAGES_PATH = "/v1/images/generations"
SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
MAX_SEED = 2**63 - 1
NO_TIMING = "queue;dur=0, compute;dur=0, batch;desc=0"
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
               405: "invalid_request_error", 413: "invalid_request_error", 422: "invalid_request_error",
               500: "server_error", 503: "server_unavailable", 504: "timeout_error"}


class ImagesRequest(BaseModel):
    """The body of ``POST /v1/images/generations``; unknown fields are refused (a typo is never ignored)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    prompt: str = Field(min_length=1)
    model: Optional[str] = None
    n: int = Field(1, ge=1)
    size: Optional[str] = None
    response_format: str = "b64_json"
    seed: Optional[int] = Field(None, ge=0, le=MAX_SEED)
    num_inference_steps: Optional[int] = Field(None, gt=0, le=1000)
    guidance_scale: Optional[float] = Field(None, ge=0)
    negative_prompt: Optional[str] = None
    # OpenAI fields a client may send: accepted, and without effect here
    user: Optional[str] = None
    quality: Optional[str] = None
    style: Optional[str] = None


@dataclass(frozen=True)
class ServedModel:
    """What ``/v1/models`` says and which ``model`` values a request may name; ``defaults``: the config's own."""

    name: str
    config_id: str
    spec: str
    defaults: Params


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: Optional[str] = None, headers: Optional[dict] = None):
        super().__init__(message)
        self.status, self.message, self.param, self.headers = status, message, param, headers or {}
        self.timing = NO_TIMING


def server_timing(queue_ms: float, compute_ms: float, batch: int) -> str:
    return f"queue;dur={queue_ms:.1f}, compute;dur={compute_ms:.1f}, batch;desc={batch}"


def error_body(status: int, message: str, param: Optional[str] = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": ERROR_TYPES.get(status, "error"), "param": param,
                                 "code": status}}).encode()


class _Metrics:
    """The app's Prometheus metrics, in a registry of its own (never the process-global one)."""

    def __init__(self, batcher: Batcher):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("t2ibench_requests", "Image generation requests, by HTTP status", ["status"],
                                registry=self.registry)
        depth = Gauge("t2ibench_queue_depth", "Requests waiting in the queue", registry=self.registry)
        depth.set_function(lambda: batcher.depth)
        self.batch = Histogram("t2ibench_batch_size", "Images per pipeline call", registry=self.registry,
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        seconds = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
        self.queue = Histogram("t2ibench_queue_seconds", "Time a request waited in the queue",
                               registry=self.registry, buckets=seconds)
        self.compute = Histogram("t2ibench_compute_seconds", "Time a request's pipeline calls took",
                                 registry=self.registry, buckets=seconds)
        self.latency = Histogram("t2ibench_request_latency_seconds", "Arrival to response, per request",
                                 registry=self.registry, buckets=seconds)
        self.calls = Histogram("t2ibench_call_seconds", "Wall time of one pipeline call", registry=self.registry,
                               buckets=seconds)

    def call(self, images: int, wall_s: float) -> None:
        self.batch.observe(images)
        self.calls.observe(wall_s)


class _DefaultServerTiming:
    """Pure ASGI middleware: a response without Server-Timing gets the zero one (every response has it)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_timing(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"server-timing" for k, _ in headers):
                    message = {**message, "headers": headers + [(b"server-timing", NO_TIMING.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_timing)


def make_app(batcher: Batcher, options: ServeOptions, served: ServedModel):
    """The FastAPI app serving ``batcher`` (whose worker runs elsewhere); ``app.state.metrics`` holds the metrics."""
    from fastapi import FastAPI, Request
    from fastapi.responses import Response
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from starlette.exceptions import HTTPException

    app = FastAPI(title="t2ibench serve", docs_url=None, redoc_url=None, openapi_url=None)
    metrics = _Metrics(batcher)
    batcher.on_call = metrics.call
    app.state.metrics = metrics
    names = {served.name, served.config_id, served.spec}
    key = options.api_key.encode() if options.api_key else None

    def json_response(status: int, body: bytes, headers: Optional[dict] = None) -> Response:
        return Response(content=body, status_code=status, media_type="application/json", headers=headers)

    def fail(e: ApiError, timing: str = NO_TIMING) -> Response:
        return json_response(e.status, error_body(e.status, e.message, e.param), {"Server-Timing": timing, **e.headers})

    def unavailable(message: str) -> ApiError:
        return ApiError(503, message, headers={"Retry-After": str(batcher.retry_after_s())})

    def authorize(request: Request) -> None:
        if key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        # compare_digest on bytes: constant time, whatever the token holds
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key):
            raise ApiError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                           headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        return fail(ApiError(exc.status_code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> Response:  # a bug here: still a JSON error
        return fail(ApiError(500, f"internal error: {type(exc).__name__}"))

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return fail(exc)

    @app.get("/health")
    async def health() -> Response:
        if batcher.stopping:
            return json_response(503, b'{"status": "draining"}', {"Retry-After": "1"})
        if not batcher.ready:
            return json_response(503, b'{"status": "loading"}', {"Retry-After": "1"})
        return json_response(200, json.dumps({"status": "ok", "max_batch_size": batcher.max_batch_size,
                                              "images_per_call": batcher.sizes.most(served.defaults)}).encode())

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        authorize(request)
        return json_response(200, json.dumps({"object": "list", "data": [
            {"id": served.name, "object": "model", "created": 0, "owned_by": "t2ibench", "root": served.spec,
             "config_id": served.config_id}]}).encode())

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(content=generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post(IMAGES_PATH)
    async def generations(request: Request) -> Response:
        arrived = time.perf_counter()
        try:
            response = await _generate(request, arrived)
        except ApiError as e:
            response = fail(e, e.timing)
        metrics.requests.labels(str(response.status_code)).inc()
        metrics.latency.observe(time.perf_counter() - arrived)
        return response

    async def _generate(request: Request, arrived: float) -> Response:
        authorize(request)
        if batcher.stopping:
            raise unavailable("the server is stopping")
        if not batcher.ready:
            raise unavailable("the model is still loading (GET /health answers 200 once it is ready)")
        req = parse(await read_body(request, options.max_body_bytes), options, served, names)
        seed = req.seed if req.seed is not None else secrets.randbelow(2**31)
        if seed + req.n - 1 > MAX_SEED:
            raise ApiError(400, f"seed + n - 1 must be at most {MAX_SEED}", "seed")
        seeds = tuple(range(seed, seed + req.n))
        try:
            future = batcher.submit(req.prompt, seeds, params_of(req, served.defaults))
        except QueueFull as e:
            raise unavailable(f"{e}; retry later") from None
        except Stopped:
            raise unavailable("the server is stopping") from None
        left = options.request_timeout_s - (time.perf_counter() - arrived)
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(future), timeout=max(left, 0.001))
        except asyncio.TimeoutError:
            e = ApiError(504, f"the request took more than request_timeout_s={options.request_timeout_s:g} s")
            e.timing = server_timing((time.perf_counter() - arrived) * 1000.0, 0.0, 0)
            raise e from None
        except GenerationError as g:
            e = ApiError(500, f"generation failed: {g}")
            if g.timing:
                e.timing = server_timing(*g.timing)
            raise e from None
        except Stopped as s:
            raise unavailable(str(s)) from None
        metrics.queue.observe(result.queue_ms / 1000.0)
        metrics.compute.observe(result.compute_ms / 1000.0)
        data = [{"b64_json": base64.b64encode(png).decode("ascii"), "seed": s}
                for png, s in zip(result.images, result.seeds)]
        body = json.dumps({"created": int(time.time()), "data": data}).encode()
        return json_response(200, body, {"Server-Timing": server_timing(result.queue_ms, result.compute_ms,
                                                                         result.batch)})

    app.add_middleware(_DefaultServerTiming)
    return app


async def read_body(request, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes (before reading it when Content-Length says so)."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise ApiError(413, f"the body has {int(length)} bytes; the limit is max_body_bytes={limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"the body is over max_body_bytes={limit}")
    return bytes(body)


def parse(body: bytes, options: ServeOptions, served: ServedModel, names: set) -> ImagesRequest:
    """The validated request, or an ApiError naming the field: 400 for a bad or unsupported value, 422 for a
    value of the wrong type or range."""
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(raw, dict):
        raise ApiError(400, "the body must be a JSON object")
    try:
        req = ImagesRequest.model_validate(raw)
    except ValidationError as e:
        problems = [f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in e.errors()]
        first = e.errors()[0]["loc"]
        raise ApiError(422, "; ".join(problems), str(first[0]) if first else None) from None
    if req.response_format != "b64_json":
        raise ApiError(400, f"response_format '{req.response_format}' is not supported: this server returns "
                            "images inline; use 'b64_json'", "response_format")
    if req.model and req.model not in names:
        raise ApiError(400, f"model '{req.model}' is not served here; this server serves '{served.name}'", "model")
    if len(req.prompt) > options.max_prompt_chars:
        raise ApiError(400, f"prompt has {len(req.prompt)} characters; the limit is {options.max_prompt_chars}",
                       "prompt")
    if req.negative_prompt is not None and len(req.negative_prompt) > options.max_prompt_chars:
        raise ApiError(400, f"negative_prompt is over {options.max_prompt_chars} characters", "negative_prompt")
    if req.n > options.max_n:
        raise ApiError(400, f"n is {req.n}; the limit is max_n={options.max_n}", "n")
    if req.size is not None and req.size != "auto":
        m = SIZE.match(req.size)
        if m is None:
            raise ApiError(400, f"size '{req.size[:40]}' must look like WIDTHxHEIGHT, e.g. 512x512", "size")
        w, h = int(m.group(1)), int(m.group(2))
        if w <= 0 or h <= 0 or w % 8 or h % 8:
            raise ApiError(400, f"size {w}x{h}: width and height must be positive multiples of 8", "size")
        if w * h > options.max_pixels or max(w, h) > 8192:
            raise ApiError(400, f"size {w}x{h} is over the limit (max_pixels={options.max_pixels}, "
                                "at most 8192 a side)", "size")
    return req


def params_of(req: ImagesRequest, defaults: Params) -> Params:
    """The request's generation parameters, the config's where it says nothing."""
    width, height = defaults.width, defaults.height
    if req.size is not None and req.size != "auto":
        width, height = (int(v) for v in req.size.split("x"))
    return Params(width, height,
                  req.num_inference_steps if req.num_inference_steps is not None else defaults.steps,
                  float(req.guidance_scale) if req.guidance_scale is not None else defaults.guidance_scale,
                  req.negative_prompt if req.negative_prompt is not None else defaults.negative_prompt)
