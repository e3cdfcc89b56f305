"""``serve``: load one config's engine, warm it up, and serve it with uvicorn until SIGTERM/SIGINT.

uvicorn listens from the start (``/health`` answers 503 while the model loads); the engine is loaded, configured,
warmed up and then called by one generation thread, the only thread that touches it. A signal makes new requests
503, lets uvicorn stop listening and wait (``drain_timeout_s``) for the requests in flight, which the generation
thread finishes; then ``serve`` returns 0.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from t2ibench.errors import SkipConfig, UserError
from t2ibench.harness.environment import resolve_device
from t2ibench.serving import INSTALL_HINT, ServeOptions, missing_packages
from t2ibench.serving.batcher import Batcher, CallSizes, Params

PROBE_PROMPTS = ("a red cube on a blue table", "a watercolor painting of a lighthouse at dusk",
                 "a cat wearing sunglasses, studio photo", "an isometric pixel-art city block")


class EngineRunner:
    """The config's loaded engine (and upscale stage), called with a batch's prompts and seeds: the same
    ``model.generate`` a run makes, so a served image is the image ``run`` writes (PNG by ``encode_png``)."""

    def __init__(self, config, device: str, timing, trust_remote_code: bool = False):
        self.config = config
        self.device = device
        self.timing = timing
        self.trust_remote_code = trust_remote_code
        self.model = None
        self.stage = None
        self._upscalers = None
        self._knobs: dict[tuple, object] = {}

    def load(self, log: Callable[[str], None]) -> None:
        """Load, configure and warm up (the config's ``timing.warmup`` calls; one at least when it compiles)."""
        from t2ibench.backends import BACKENDS
        from t2ibench.backends.upscale import Upscalers

        knobs = self.config.knobs
        spec = BACKENDS.get(knobs.backend)
        missing = spec.missing()
        if missing:
            raise UserError(f"backend '{spec.name}' needs {', '.join(missing)}: {spec.install_hint()}")
        try:
            t0 = time.perf_counter()
            self.model = spec.make_engine().load(self.config.model, knobs, self.device,
                                                 trust_remote_code=self.trust_remote_code)
            self.model.configure(knobs)
            if knobs.upscale is not None:
                self._upscalers = Upscalers(self.device)
                self.stage = self._upscalers.stage(knobs.upscale, knobs.precision, knobs.prompt_suffix)
            load_s = time.perf_counter() - t0
            one = knobs.replace(batch_size=1)
            for _ in range(spec.warmup_calls(knobs, self.timing.warmup)):
                self.model.warmup([PROBE_PROMPTS[0]], [0], one)
                if self.stage is not None:
                    self.stage.warmup(1, knobs.width, knobs.height)
        except SkipConfig as e:
            raise UserError(f"config '{self.config.name}' cannot run here: {e}") from None
        log(f"t2ibench serve: loaded {self.config.model} in {load_s:.1f} s")

    def knobs(self, params: Params, n: int):
        """The config's knobs with a request's size, steps, guidance and negative prompt, for ``n`` images."""
        key = (params, n)
        if key not in self._knobs:
            self._knobs[key] = self.config.knobs.replace(
                width=params.width, height=params.height, steps=params.steps, guidance_scale=params.guidance_scale,
                negative_prompt=params.negative_prompt, batch_size=n)
        return self._knobs[key]

    def pixels(self, params: Params, prompts: list, seeds: list) -> list:
        """One pipeline call (then the upscale stage): an ImageOutcome per image."""
        try:
            outcome = self.model.generate(list(prompts), list(seeds), self.knobs(params, len(prompts)))
        except Exception as e:
            failed = e.with_traceback(None)  # its frames (and their tensors) go, as in the worker
        else:
            failed = None
        if failed is not None:
            self.model.recover()  # free what the failed call left on the device (a CUDA OOM), for the next call
            raise failed
        if self.stage is not None:
            outcome = self.stage.apply(outcome, list(prompts), list(seeds))
        return outcome.images

    def __call__(self, params: Params, prompts: list, seeds: list) -> list:
        from t2ibench.store import encode_png

        return [encode_png(img.pixels) if img.status == "ok" else
                f"image of seed {seed}: {img.error or img.status}" for img, seed in
                zip(self.pixels(params, prompts, seeds), seeds)]

    def call_sizes(self, max_batch_size: int, exact: bool, log: Callable[[str], None]) -> CallSizes:
        """How many images one call may hold. Not ``exact``: any number up to ``max_batch_size``. ``exact``: one
        image per call. Batched kernels are not batch-invariant (CPU GEMMs pick their kernel by the number of
        rows), so a batched image differs from its lone image in the last float bits, which shows as a pixel
        level here and there; a warm-up probe cannot rule that out, since equal probe pixels do not make equal
        floats (a probe that passed at batch 2 was contradicted by the next prompts)."""
        if max_batch_size == 1 or not exact:
            return CallSizes(max_batch_size)
        log(f"t2ibench serve: note: max_batch_size {max_batch_size} with exact batches (the default) runs one image "
            "per call, so that each image equals its request's lone image bit for bit (batched kernels are not "
            "batch-invariant); --inexact-batches (exact_batches: false) batches them")
        k = self.config.knobs
        return CallSizes(max_batch_size, (), Params(k.width, k.height, k.steps, k.guidance_scale, k.negative_prompt))

    def close(self) -> None:
        if self._upscalers is not None:
            self._upscalers.close()
        if self.model is not None:
            self.model.close()
            self.model = None


def calls(allowed: tuple[int, ...]) -> str:
    return "one image per call" if allowed == (1,) else f"calls of {', '.join(map(str, allowed))} images"


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _server_class():
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server whose signal handling makes new requests 503 at once and exits 0 after draining
        (uvicorn itself re-raises the signal after its graceful shutdown, which would end the process by it)."""

        batcher: Batcher

        def handle_exit(self, sig, frame) -> None:
            self.batcher.stop()
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self):
            if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
                yield
                return
            original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    return Server


def serve(config, *, device: str, options: ServeOptions, timing, trust_remote_code: bool = False,
          port_file: Optional[Path] = None, log: Callable[[str], None] = print) -> int:
    """Serve ``config`` until SIGTERM/SIGINT; returns 0 after a clean stop. ``port_file`` gets the bound port
    (written atomically) once ``/health`` answers 200. A load that fails raises (a UserError for the user's)."""
    missing = missing_packages()
    if missing:
        raise UserError(f"t2ibench serve needs {', '.join(missing)}: {INSTALL_HINT}")
    import uvicorn

    from t2ibench.backends import BACKENDS
    from t2ibench.serving.app import ServedModel, make_app
    from t2ibench.store import write_atomic

    spec = BACKENDS.get(config.knobs.backend)
    spec.check_model(config.model)  # a model spec that cannot load, a missing file: said before listening
    device = resolve_device(device)
    for finding in spec.check_config(config.model, config.knobs, device):
        raise UserError(finding.message if finding.level == "error" else
                        f"config '{config.name}' cannot run here: {finding.knob}: {finding.message}")
    knobs = config.knobs
    batcher = Batcher(max_batch_size=options.max_batch_size, max_wait_ms=options.max_wait_ms,
                      max_queue=options.max_queue)
    defaults = Params(knobs.width, knobs.height, knobs.steps, knobs.guidance_scale, knobs.negative_prompt)
    app = make_app(batcher, options, ServedModel(config.name, config.config_id, config.model, defaults))
    sock = _bind(options.host, options.port)
    url = _url(sock)
    server = _server_class()(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                            timeout_graceful_shutdown=int(max(options.drain_timeout_s, 1))))
    server.batcher = batcher
    failure: list[BaseException] = []

    def generation() -> None:  # the only thread that touches the engine
        runner = EngineRunner(config, device, timing, trust_remote_code)
        try:
            runner.load(log)
            sizes = runner.call_sizes(options.max_batch_size, options.exact_batches, log)
        except BaseException as e:
            failure.append(e)
            server.should_exit = True
            runner.close()
            return
        try:
            if not batcher.stopping:
                batcher.sizes, batcher.ready = sizes, True
                if port_file is not None:
                    write_atomic(Path(port_file), f"{sock.getsockname()[1]}\n".encode())
                log(f"serving {config.name} on {url} (OpenAI Images API; Ctrl-C stops)")
            batcher.work(runner, sizes)
        finally:
            runner.close()

    log(f"t2ibench serve: loading {config.name} ({config.model}) on {device}; {url}/health answers 503 until "
        "it is warm")
    worker = threading.Thread(target=generation, name="t2ibench-generation", daemon=True)
    worker.start()
    server.run(sockets=[sock])  # returns after a signal (and the drain) or a failed load
    batcher.stop()
    dropped = batcher.cancel_queued("the server stopped before this request ran")
    worker.join(timeout=max(options.drain_timeout_s, 1.0))
    if failure:
        raise failure[0]
    if dropped:
        log(f"t2ibench serve: the drain ran out of time (drain_timeout_s={options.drain_timeout_s:g}); "
            f"{dropped} queued requests were dropped")
    log("t2ibench serve: stopped")
    return 0
