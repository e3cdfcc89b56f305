"""``t2ibench serve``: one config behind the OpenAI Images API (FastAPI + uvicorn, the ``[serve]`` extra).

The layer between harness and metrics. Its parts:

- :class:`ServeOptions`: the server's settings (bind address, API key, batching, queue and limits);
- :mod:`.batcher`: the bounded queue and the one generation thread (the engine is not thread-safe) that groups
  compatible requests into one pipeline call;
- :mod:`.app`: the ASGI app (``make_app``): ``POST /v1/images/generations``, ``GET /health``, ``/v1/models``,
  ``/metrics``;
- :mod:`.server`: :func:`serve`: load the config's engine, warm it up, run uvicorn, drain on SIGTERM/Ctrl-C.

Heavy imports (torch, fastapi, uvicorn) happen inside functions: importing this package is cheap.
"""

from __future__ import annotations

from typing import Optional

from pydantic import Field

from t2ibench.base import Frozen

SERVE_PACKAGES: tuple[str, ...] = ("fastapi", "uvicorn", "prometheus_client")
INSTALL_HINT = "pip install 't2ibench[serve]'"


class ServeOptions(Frozen):
    """How ``t2ibench serve`` serves one config.

    ``port`` 0 picks a free port. ``api_key``: when set, ``/v1/*`` needs ``Authorization: Bearer <key>``.
    ``max_batch_size`` images (of compatible requests: same size, steps, guidance and negative prompt) share one
    pipeline call; a batch waits up to ``max_wait_ms`` to fill. ``max_queue`` requests wait at most, then 503.
    ``exact_batches``: a served image must equal the image its request gets alone, bit for bit, so each image runs
    in its own call (batched kernels are not batch-invariant: CPU GEMMs pick their kernel by the batch's size).
    False batches compatible requests (faster; an image may then differ from its lone one by a pixel level).
    """

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_key: Optional[str] = Field(None, min_length=1)
    max_batch_size: int = Field(1, ge=1, le=256)
    max_wait_ms: float = Field(0.0, ge=0, le=60_000)
    max_queue: int = Field(64, ge=1, le=100_000)
    request_timeout_s: float = Field(600.0, gt=0)
    max_body_bytes: int = Field(65536, ge=1024)
    max_prompt_chars: int = Field(4000, ge=1)
    max_n: int = Field(8, ge=1, le=256)
    max_pixels: int = Field(4096 * 4096, ge=64)
    drain_timeout_s: float = Field(30.0, ge=0)
    exact_batches: bool = True


def missing_packages() -> list[str]:
    """The ``[serve]`` extra's modules that are not installed here."""
    import importlib.util

    return [m for m in SERVE_PACKAGES if importlib.util.find_spec(m) is None]


def serve(config, *, device: str, options: ServeOptions, timing, trust_remote_code: bool = False,
          port_file=None, log=print) -> int:
    """Serve ``config`` until SIGTERM/SIGINT; see :func:`t2ibench.serving.server.serve`."""
    from t2ibench.serving.server import serve as _serve

    return _serve(config, device=device, options=options, timing=timing, trust_remote_code=trust_remote_code,
                  port_file=port_file, log=log)


__all__ = ["ServeOptions", "serve", "missing_packages", "INSTALL_HINT"]
