"""The http engine: each image of a call is one ``POST /v1/images/generations`` to the config's endpoint, sent
one after another through :func:`~t2ibench.backends.http.client.post_images` on the model's own event loop and
aiohttp session (one kept-alive connection)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Optional

from t2ibench.backends.engine import CallOutcome, ImageOutcome
from t2ibench.backends.http import NEEDS_ENDPOINT, unsupported_knobs
from t2ibench.backends.http.client import EndpointError, ImageRequest, decode_png, make_session, post_images
from t2ibench.backends.memory import MemoryTracker
from t2ibench.backends.timing import CallTiming
from t2ibench.errors import SkipConfig, UserError

if TYPE_CHECKING:
    from t2ibench.backends.common import ConfigKnobs as Knobs

MODELS_TIMEOUT_S = 10.0  # GET /v1/models, asked once for what configure() reports


class HttpModel:
    """A client of one endpoint: what a local engine's loaded model is, for a remote one."""

    def __init__(self, url: str, model: str, api_key: Optional[str], timeout_s: float):
        self.url, self.model, self.api_key, self.timeout_s = url, model, api_key, timeout_s
        self.memory = MemoryTracker(cuda=False)
        self.loop = asyncio.new_event_loop()
        self.session = self.loop.run_until_complete(self._session())
        self.served_model: Optional[str] = None
        self.closed = False

    @staticmethod
    async def _session():
        return make_session(1)

    def configure(self, knobs: Knobs) -> dict:
        for _, why in unsupported_knobs(knobs):
            raise SkipConfig(why)
        if self.served_model is None:
            self.served_model = self.loop.run_until_complete(self._models()) or ""
        return {"endpoint": self.url, **({"model": self.served_model} if self.served_model else {})}

    async def _models(self) -> Optional[str]:
        """The first model ``GET /v1/models`` names (None when the endpoint does not say)."""
        import aiohttp

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else None
        try:
            async with self.session.get(self.url + "/v1/models", headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=MODELS_TIMEOUT_S)) as resp:
                if resp.status != 200:
                    return None
                data = await resp.json(content_type=None)
            first = data["data"][0]["id"]
            return first if isinstance(first, str) else None
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError, KeyError, IndexError, TypeError):
            return None

    def _request(self, prompt: str, seed: int, knobs: Knobs) -> ImageRequest:
        return ImageRequest(prompt + knobs.prompt_suffix, knobs.width, knobs.height, seed=seed, steps=knobs.steps,
                            guidance_scale=knobs.guidance_scale, negative_prompt=knobs.negative_prompt, n=1,
                            model=self.model)

    def generate(self, prompts: list[str], seeds: list[int], knobs: Knobs) -> CallOutcome:
        """One request per image, in order; an answer without its image raises :class:`EndpointError`."""
        t0 = time.perf_counter()
        images = []
        for prompt, seed in zip(prompts, seeds):
            r = self.loop.run_until_complete(post_images(self.session, self.url, self._request(prompt, seed, knobs),
                                                         api_key=self.api_key, timeout_s=self.timeout_s))
            if not r.ok:
                raise EndpointError(f"{self.url}: {r.error_kind}: {r.error}", r)
            images += [ImageOutcome("ok", decode_png(png)) for png in r.images[:1]]
        wall = (time.perf_counter() - t0) * 1000.0
        return CallOutcome(images, CallTiming(wall, 0.0, wall, 0.0, []))

    def warmup(self, prompts: list[str], seeds: list[int], knobs: Knobs) -> float:
        t0 = time.perf_counter()
        self.generate(prompts, seeds, knobs)
        return (time.perf_counter() - t0) * 1000.0

    def peak_memory(self) -> tuple[Optional[float], float]:
        """(None, this client's peak RSS MB): the server's memory is its own."""
        return None, self.memory.peak_rss_mb()

    def reset_peak_memory(self) -> None:
        self.memory.reset()

    def recover(self) -> None:
        """Nothing to free on this side of the connection."""

    def close(self) -> None:
        if self.closed:
            return
        self.loop.run_until_complete(self.session.close())
        self.loop.close()
        self.closed = True


class HttpBackend:
    def load(self, model: str, knobs: Knobs, device: str, *, trust_remote_code: bool = False) -> HttpModel:
        endpoint = knobs.options.endpoint
        if endpoint is None:
            raise UserError(NEEDS_ENDPOINT)
        api_key = None
        if endpoint.api_key_env:
            api_key = os.environ.get(endpoint.api_key_env)
            if not api_key:
                raise UserError(f"the environment variable {endpoint.api_key_env} (endpoint.api_key_env) is not set")
        return HttpModel(endpoint.url, endpoint.model, api_key, endpoint.timeout_s)
