"""The ``http`` backend's declaration: a config whose calls go to an OpenAI-images endpoint.

Any OpenAI-images-compatible server works (``t2ibench serve``, vllm-omni, SGLang): the engine (:mod:`.engine`)
POSTs one request per image to ``endpoint.url`` through :mod:`.client`, the one async client every HTTP caller
uses (the load generator too). Its own knob is ``endpoint: {url, model, api_key_env, timeout_s}``; the knobs the
server decides (precision, attention…) are not its. This module stays free of aiohttp imports.
"""

from __future__ import annotations

import os
from typing import Optional
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from t2ibench.backends import BACKENDS, BackendSpec, Finding
from t2ibench.base import Frozen

NEEDS_ENDPOINT = "backend http needs endpoint: {url: http://host:port}"


class EndpointOptions(Frozen):
    """Where an http config's requests go: ``url`` (the server's base, ``http://host:port``), the ``model`` name
    sent with each request (empty: none), the environment variable holding its API key, and a per-request
    timeout."""

    url: str
    model: str = ""
    api_key_env: Optional[str] = Field(None, min_length=1)
    timeout_s: float = Field(600.0, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s)://host:port URL, got {v!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"must be the server's base URL, without query or fragment, got {v!r}")
        try:
            parts.port
        except ValueError as e:
            raise ValueError(f"bad port in {v!r}: {e}") from None
        return v.rstrip("/")


class HttpOptions(Frozen):
    """Engine knobs of the http backend (written flat: ``endpoint: {url: ..., ...}``)."""

    endpoint: Optional[EndpointOptions] = None


# common knobs an OpenAI images request cannot carry: the server decides them (their defaults mean "the server's")
SERVER_DECIDES: dict[str, object] = {"precision": "fp32", "scheduler": None, "vae": "default", "vae_slicing": False,
                                     "vae_tiling": False, "cache_text_embeddings": False}


def unsupported_knobs(knobs) -> list[tuple[str, str]]:
    """(knob, why) for each knob set that an http config cannot send: the preflight and the engine say the same."""
    return [(k, f"{k} is decided by the server behind backend 'http' (an images request cannot carry it); "
                "set it on the server's config")
            for k, default in SERVER_DECIDES.items() if getattr(knobs, k) != default]


def preflight(model: str, knobs, device: Optional[str]) -> list[Finding]:
    """No endpoint, an API-key variable that is not set, aiohttp missing, a knob only the server can set."""
    import importlib.util

    found = []
    if importlib.util.find_spec("aiohttp") is None:
        found.append(Finding("skip", "backend", "backend 'http' needs aiohttp: pip install 't2ibench[serve]'"))
    endpoint = knobs.options.endpoint
    if endpoint is None:
        found.append(Finding("error", "endpoint", NEEDS_ENDPOINT))
    elif endpoint.api_key_env and not os.environ.get(endpoint.api_key_env):
        found.append(Finding("error", "endpoint", f"the environment variable {endpoint.api_key_env} "
                                                  "(endpoint.api_key_env) is not set", path=("api_key_env",)))
    return found + [Finding("skip", knob, why) for knob, why in unsupported_knobs(knobs)]


HTTP = BACKENDS.add("http", BackendSpec(
    name="http",
    engine="t2ibench.backends.http.engine:HttpBackend",
    options=HttpOptions,
    load_fields=("endpoint",),
    preflight="t2ibench.backends.http:preflight",
    description="an OpenAI-images endpoint (t2ibench serve, vllm-omni, SGLang): one request per image",
    packages=("aiohttp",), extra="serve",
    # tests/test_contracts.py serves tests/serving_apps.py's app and sets endpoint to its URL
    test_model="endpoint",
))
