"""t2ibench serve: a real uvicorn on 127.0.0.1 (a random port), spoken to with http.client; nothing mocked at HTTP.

Two kinds of server:
- the real entry (``python -m t2ibench.serving``) in a subprocess, on ``random:tiny-sd`` at 64x64, 2 steps: images
  byte for byte against the engine's own offline call, /health 503 then 200, the API key, SIGTERM draining;
- the same app in this process on a real uvicorn thread, with the tiny engine (batching off, inexact batching) or
  with a runner the test controls (queue full, timeouts, bad requests, grouping, /metrics).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from t2ibench.serving import ServeOptions  # noqa: E402
from t2ibench.serving.app import ServedModel, make_app  # noqa: E402
from t2ibench.serving.batcher import Batcher, Params  # noqa: E402
from t2ibench.store import encode_png  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KEY = "test-key-1f3a"
AUTH = {"Authorization": f"Bearer {KEY}"}
KNOBS = {"steps": 2, "width": 64, "height": 64, "guidance_scale": 7.5}
PROMPTS = ["a red cube on a table", "a lighthouse at dusk", "a cat in sunglasses", "an isometric city block"]


# -- HTTP client (http.client only) ---------------------------------------------------------------------
def request(url: str, method: str, path: str, body=None, headers=None, timeout: float = 60.0):
    """(status, lower-cased headers, parsed JSON or raw text)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        raw = resp.read()
        heads = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = raw.decode(errors="replace")
    return resp.status, heads, parsed


def generate(url: str, body: dict, headers=None, timeout: float = 60.0):
    return request(url, "POST", "/v1/images/generations", body, headers, timeout)


def timing_of(headers: dict) -> dict:
    """Server-Timing parsed: {"queue": ms, "compute": ms, "batch": N}."""
    out = {}
    for part in headers["server-timing"].split(","):
        name, _, value = part.strip().partition(";")
        key, _, number = value.partition("=")
        out[name] = float(number) if key == "dur" else int(number)
    return out


def png_pixels(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def wait_until(check, timeout: float, what: str, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# -- the tiny engine in this process, and the offline reference ----------------------------------------
@pytest.fixture(scope="module")
def config():
    from t2ibench.suites import Config

    return Config.model_validate({"name": "tiny", "model": "random:tiny-sd", "knobs": KNOBS})


@pytest.fixture(scope="module")
def engine(config):
    """The config's engine, loaded once here (no warm-up): the reference images and the in-process servers."""
    from t2ibench.serving.server import EngineRunner
    from t2ibench.suites import Timing

    runner = EngineRunner(config, "cpu", Timing(warmup=0))
    runner.load(log=lambda line: None)
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def offline(engine, config):
    """(prompt, seed) -> the PNG bytes of the offline image: the engine's own call with the config's knobs (batch
    of one), encoded by encode_png as `run` writes it."""
    cache: dict = {}

    def reference(prompt: str, seed: int, **changes) -> bytes:
        key = (prompt, seed, tuple(sorted(changes.items())))
        if key not in cache:
            knobs = config.knobs.replace(**changes) if changes else config.knobs
            outcome = engine.model.generate([prompt], [seed], knobs)
            cache[key] = encode_png(outcome.images[0].pixels)
        return cache[key]

    return reference


# -- the real entry in a subprocess ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``python -m t2ibench.serving`` (max_batch_size 4, API key from the environment), with what its /health
    and an early POST answered while it loaded."""
    tmp = tmp_path_factory.mktemp("serve")
    spec = {"model": "random:tiny-sd", "name": "tiny", "knobs": KNOBS, "timing": {"warmup": 1},
            "serve": {"port": 0, "max_batch_size": 4, "max_wait_ms": 300, "max_queue": 16, "drain_timeout_s": 60}}
    (tmp / "config.json").write_text(json.dumps(spec))
    log = open(tmp / "stderr.txt", "wb")
    env = {**os.environ, "T2IBENCH_API_KEY": KEY, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "t2ibench.serving", "--config-json", str(tmp / "config.json"),
                             "--port-file", str(tmp / "port"), "--device", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=log, env=env, cwd=tmp)
    try:
        line = wait_until(lambda: next((ln for ln in (tmp / "stderr.txt").read_text().splitlines()
                                        if "/health answers 503" in ln), None) or proc.poll() is not None,
                          120, "the server's first line")
        assert proc.poll() is None, (tmp / "stderr.txt").read_text()
        url = line.split(" on cpu; ")[1].split("/health")[0]
        statuses, early_post = [], None
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, _, _ = request(url, "GET", "/health", timeout=5)
            except OSError:  # not listening yet
                time.sleep(0.05)
                continue
            statuses.append(status)
            if status == 200:
                break
            if early_post is None:
                early_post = generate(url, {"prompt": "x", "seed": 0}, AUTH, timeout=5)
            time.sleep(0.1)
        assert statuses and statuses[-1] == 200, (statuses, (tmp / "stderr.txt").read_text())
        yield {"url": url, "proc": proc, "statuses": statuses, "early_post": early_post, "dir": tmp}
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        log.close()


def test_health_is_503_until_warm_then_200(served):
    statuses = served["statuses"]
    assert statuses[0] == 503 and statuses[-1] == 200 and set(statuses) == {503, 200}, statuses
    status, headers, body = served["early_post"]
    assert status == 503 and int(headers["retry-after"]) >= 1
    assert "loading" in body["error"]["message"] and body["error"]["code"] == 503
    port = int((served["dir"] / "port").read_text())  # written once healthy
    assert served["url"].endswith(f":{port}")
    status, _, body = request(served["url"], "GET", "/v1/models", headers=AUTH)
    assert status == 200 and body["data"][0]["id"] == "tiny" and body["data"][0]["root"] == "random:tiny-sd"


def test_served_images_equal_offline_with_batching_on(served, offline):
    """Several concurrent requests (one with n=2) on a server with max_batch_size 4: every image is the offline
    image of its prompt and seed, byte for byte."""
    asks = [(PROMPTS[i % 4], 10 + i, 1) for i in range(5)] + [(PROMPTS[1], 40, 2)]
    with ThreadPoolExecutor(len(asks)) as pool:
        answers = list(pool.map(lambda a: generate(served["url"], {"prompt": a[0], "seed": a[1], "n": a[2],
                                                                   "size": "64x64"}, AUTH), asks))
    _, _, health = request(served["url"], "GET", "/health")
    for (prompt, seed, n), (status, headers, body) in zip(asks, answers):
        assert status == 200, body
        assert [d["seed"] for d in body["data"]] == list(range(seed, seed + n))
        for item in body["data"]:
            png = base64.b64decode(item["b64_json"])
            ref = offline(prompt, item["seed"])
            assert np.array_equal(png_pixels(png), png_pixels(ref)), (prompt, item["seed"])
            assert png == ref
        t = timing_of(headers)
        assert t["compute"] > 0 and t["queue"] >= 0 and 1 <= t["batch"] <= health["images_per_call"]
    if health["images_per_call"] > 1:  # the probe verified batched calls here: some requests shared one
        assert max(timing_of(a[1])["batch"] for a in answers) > 1


def test_api_key_is_required(served):
    url = served["url"]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": f"Basic {KEY}"}):
        status, heads, body = generate(url, {"prompt": "a cat", "seed": 0}, headers)
        assert status == 401 and body["error"]["code"] == 401 and heads["www-authenticate"] == "Bearer", headers
        assert request(url, "GET", "/v1/models", headers=headers)[0] == 401
    assert request(url, "GET", "/health")[0] == 200  # probes need no key


# -- in-process servers ---------------------------------------------------------------------------------
SERVED = ServedModel("fake", "0123456789ab", "random:fake", Params(64, 64, 2, 7.5, None))


@contextlib.contextmanager
def app_server(runner, sizes=None, served: ServedModel = SERVED, **options):
    """make_app on a real uvicorn in a thread (port 0), the batcher's worker in another; yields (url, batcher, app)."""
    import uvicorn

    opts = ServeOptions(port=0, **options)
    batcher = Batcher(max_batch_size=opts.max_batch_size, max_wait_ms=opts.max_wait_ms, max_queue=opts.max_queue)
    app = make_app(batcher, opts, served)
    worker = threading.Thread(target=batcher.work, args=(runner, sizes or opts.max_batch_size), daemon=True)
    worker.start()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 20, "uvicorn to start")
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", batcher, app
    finally:
        server.should_exit = True
        batcher.stop()
        thread.join(20)
        worker.join(20)
        assert not thread.is_alive() and not worker.is_alive()


class FakeRunner:
    """A runner that records its calls, can be held at a gate, and returns one solid PNG per seed."""

    def __init__(self, gated: bool = False):
        self.calls: list[tuple[Params, list, list]] = []
        self.gate = threading.Event()
        self.running = threading.Event()
        if not gated:
            self.gate.set()

    def __call__(self, params, prompts, seeds):
        self.calls.append((params, list(prompts), list(seeds)))
        self.running.set()
        assert self.gate.wait(30)
        return [encode_png(np.full((params.height, params.width, 3), s % 256, np.uint8)) for s in seeds]


def test_served_images_equal_offline_with_batching_off(engine, offline):
    with app_server(engine, max_batch_size=1) as (url, _, _):
        asks = [(PROMPTS[i], 20 + i) for i in range(3)]
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda a: generate(url, {"prompt": a[0], "seed": a[1]}), asks))
        for (prompt, seed), (status, headers, body) in zip(asks, answers):
            assert status == 200, body
            assert base64.b64decode(body["data"][0]["b64_json"]) == offline(prompt, seed)
            assert timing_of(headers)["batch"] == 1
        # no seed: the server picks one, says which, and the image is that seed's
        status, _, body = generate(url, {"prompt": PROMPTS[3]})
        assert status == 200 and isinstance(body["data"][0]["seed"], int)
        assert base64.b64decode(body["data"][0]["b64_json"]) == offline(PROMPTS[3], body["data"][0]["seed"])
        # the request's own steps, guidance and negative prompt reach the engine
        status, _, body = generate(url, {"prompt": PROMPTS[0], "seed": 5, "num_inference_steps": 3,
                                         "guidance_scale": 4.0, "negative_prompt": "blurry"})
        assert status == 200
        assert base64.b64decode(body["data"][0]["b64_json"]) == offline(PROMPTS[0], 5, steps=3, guidance_scale=4.0,
                                                                        negative_prompt="blurry")


def test_inexact_batches_run_one_call(engine, offline):
    """exact_batches false: four concurrent requests become one pipeline call of 4 images (the grouping is real);
    each image is its lone image up to the last bits of float rounding."""
    with app_server(engine, max_batch_size=4, max_wait_ms=5000, exact_batches=False) as (url, _, app):
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda i: generate(url, {"prompt": PROMPTS[i], "seed": 30 + i}), range(4)))
        for i, (status, headers, body) in enumerate(answers):
            assert status == 200 and timing_of(headers)["batch"] == 4
            got = png_pixels(base64.b64decode(body["data"][0]["b64_json"])).astype(int)
            assert np.abs(got - png_pixels(offline(PROMPTS[i], 30 + i))).max() <= 2
        assert app.state.metrics.batch.collect()[0].samples  # observed
        counts = {s.labels.get("le"): s.value for s in app.state.metrics.batch.collect()[0].samples
                  if s.name.endswith("_bucket")}
        assert counts["2.0"] == 0 and counts["4.0"] == 1


def test_batcher_groups_compatible_requests():
    runner = FakeRunner()
    with app_server(runner, max_batch_size=4, max_wait_ms=3000) as (url, _, _):
        bodies = [{"prompt": "a", "seed": 0}, {"prompt": "b", "seed": 10, "n": 2}, {"prompt": "c", "seed": 20},
                  {"prompt": "d", "seed": 7, "size": "64x72"}]
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda b: generate(url, b), bodies))
    assert all(a[0] == 200 for a in answers)
    by_size = {(p.width, p.height): (prompts, seeds) for p, prompts, seeds in runner.calls}
    assert len(runner.calls) == 2  # the three 64x64 requests (4 images) in one call, the 64x72 one alone
    prompts, seeds = by_size[(64, 64)]
    assert sorted(zip(prompts, seeds)) == [("a", 0), ("b", 10), ("b", 11), ("c", 20)]
    assert by_size[(64, 72)] == (["d"], [7])
    for body, (_, headers, answer) in zip(bodies, answers):
        n, seed = body.get("n", 1), body["seed"]
        assert [png_pixels(base64.b64decode(d["b64_json"]))[0, 0, 0] for d in answer["data"]] == \
            list(range(seed, seed + n))  # each image is its own seed's
        assert timing_of(headers)["batch"] == (1 if "size" in body else 4)


def test_call_sizes_keep_batched_calls_to_verified_sizes():
    """exact batching: calls only at the probe's verified sizes, and only for the probed parameters."""
    from t2ibench.serving.batcher import CallSizes

    runner = FakeRunner()
    sizes = CallSizes(4, (2,), SERVED.defaults)  # as if batches of 3 and 4 differed from lone calls
    assert sizes.split(4, SERVED.defaults) == [2, 2] and sizes.split(3, SERVED.defaults) == [2, 1]
    assert sizes.split(3, Params(64, 72, 2, 7.5, None)) == [1, 1, 1]
    with app_server(runner, sizes, max_batch_size=4, max_wait_ms=3000) as (url, _, _):
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda b: generate(url, b), [
                {"prompt": "a", "seed": 0, "n": 3}, {"prompt": "b", "seed": 5, "size": "64x72", "n": 2}]))
    assert [a[0] for a in answers] == [200, 200]
    calls = sorted((p.height, seeds) for p, _, seeds in runner.calls)
    assert calls == [(64, [0, 1]), (64, [2]), (72, [5]), (72, [6])]
    assert [timing_of(a[1])["batch"] for a in answers] == [2, 1]


def test_a_failed_call_is_a_500_and_the_server_goes_on():
    def runner(params, prompts, seeds):
        if "boom" in prompts:
            raise RuntimeError("CUDA out of memory\nmore lines")
        return ["image of seed 1: non-finite pixels" if p == "nan" else encode_png(np.zeros((64, 64, 3), np.uint8))
                for p in prompts]

    with app_server(runner) as (url, _, _):
        status, headers, body = generate(url, {"prompt": "boom", "seed": 0})
        assert status == 500 and body["error"]["message"] == "generation failed: RuntimeError: CUDA out of memory"
        assert timing_of(headers)["batch"] == 1
        status, _, body = generate(url, {"prompt": "nan", "seed": 1})
        assert status == 500 and "non-finite" in body["error"]["message"]
        assert generate(url, {"prompt": "fine", "seed": 2})[0] == 200


def test_bad_requests_get_json_errors_naming_the_problem():
    runner = FakeRunner()
    with app_server(runner, max_body_bytes=2048, max_prompt_chars=100, max_n=4, max_pixels=128 * 128) as (url, _, _):
        cases = [
            (b"{not json", 400, "JSON"),
            (b"[1, 2]", 400, "object"),
            ({"prompt": "a", "response_format": "url"}, 400, "response_format"),
            ({"prompt": "a", "n": 5}, 400, "n"),
            ({"prompt": "a", "n": 0}, 422, "n"),
            ({"prompt": "a", "n": "two"}, 422, "n"),
            ({"prompt": "x" * 101}, 400, "prompt"),
            ({"prompt": ""}, 422, "prompt"),
            ({}, 422, "prompt"),
            ({"prompt": "a", "size": "big"}, 400, "size"),
            ({"prompt": "a", "size": "65x64"}, 400, "size"),
            ({"prompt": "a", "size": "256x256"}, 400, "size"),
            ({"prompt": "a", "seed": -1}, 422, "seed"),
            ({"prompt": "a", "num_inference_steps": 0}, 422, "num_inference_steps"),
            ({"prompt": "a", "guidance_scale": -1}, 422, "guidance_scale"),
            ({"prompt": "a", "num_inference_step": 4}, 422, "num_inference_step"),
            ({"prompt": "a", "model": "other"}, 400, "model"),
            ({"prompt": "a" * 3000}, 413, "max_body_bytes"),
        ]
        for body, code, named in cases:
            status, headers, answer = generate(url, body)
            assert status == code, (body, answer)
            error = answer["error"]
            assert error["code"] == code and named in error["message"] and error["type"], (body, error)
            assert "server-timing" in headers
        assert request(url, "GET", "/nowhere")[2]["error"]["code"] == 404
        assert generate(url, {"prompt": "a", "model": "fake", "size": "auto"})[0] == 200  # the served names work
    assert len(runner.calls) == 1  # no bad request reached the engine


def test_queue_full_is_503_with_retry_after_and_the_server_survives():
    runner = FakeRunner(gated=True)
    with app_server(runner, max_queue=2) as (url, batcher, _):
        with ThreadPoolExecutor(3) as pool:
            first = pool.submit(generate, url, {"prompt": "a", "seed": 1})
            assert runner.running.wait(20)  # taken by the worker, held at the gate
            queued = [pool.submit(generate, url, {"prompt": "b", "seed": s}) for s in (2, 3)]
            wait_until(lambda: batcher.depth == 2, 20, "two queued requests")
            status, headers, body = generate(url, {"prompt": "c", "seed": 4})
            assert status == 503 and int(headers["retry-after"]) >= 1 and "queue is full" in body["error"]["message"]
            runner.gate.set()
            assert [f.result(30)[0] for f in [first, *queued]] == [200, 200, 200]
        assert generate(url, {"prompt": "d", "seed": 5})[0] == 200
    assert sorted(c[2] for c in runner.calls) == [[1], [2], [3], [5]] and runner.calls[0][2] == [1]


def test_request_timeout_is_504_and_a_timed_out_request_never_runs():
    runner = FakeRunner(gated=True)
    with app_server(runner, request_timeout_s=0.5) as (url, batcher, _):
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(generate, url, {"prompt": "a", "seed": 1})
            assert runner.running.wait(20)
            t0 = time.monotonic()
            status, headers, body = generate(url, {"prompt": "b", "seed": 2})  # queued behind the held call
            assert status == 504 and body["error"]["code"] == 504 and 0.4 < time.monotonic() - t0 < 10
            assert timing_of(headers)["queue"] >= 400
            assert running.result(30)[0] == 504
        runner.gate.set()
        assert generate(url, {"prompt": "c", "seed": 3})[0] == 200
    assert [c[2] for c in runner.calls] == [[1], [3]]  # seed 2 timed out while queued: never generated


def test_requests_that_timed_out_in_the_queue_leave_room():
    runner = FakeRunner(gated=True)
    with app_server(runner, request_timeout_s=1.0, max_queue=1) as (url, batcher, _):
        with ThreadPoolExecutor(2) as pool:
            held = pool.submit(generate, url, {"prompt": "a", "seed": 1})
            assert runner.running.wait(20)
            assert generate(url, {"prompt": "b", "seed": 2})[0] == 504  # queued, then timed out
            assert batcher.depth == 1  # still in the deque, cancelled
            later = pool.submit(generate, url, {"prompt": "c", "seed": 3})  # not refused as "queue full"
            wait_until(lambda: len(runner.calls) == 1 and batcher.depth == 1 and not later.done(), 5, "c queued")
            runner.gate.set()
            assert later.result(30)[0] == 200 and held.result(30)[0] == 504
    assert [c[2] for c in runner.calls] == [[1], [3]]


def test_metrics_parse_and_count_requests():
    from prometheus_client.parser import text_string_to_metric_families

    runner = FakeRunner()
    with app_server(runner, max_batch_size=2) as (url, _, _):  # the n=2 request: one call of 2 images
        for body in ({"prompt": "a", "seed": 1}, {"prompt": "b", "seed": 2, "n": 2}, {"prompt": "c", "n": 99},
                     {"prompt": 3}):
            generate(url, body)
        status, headers, text = request(url, "GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = {s.labels["status"]: s.value for s in families["t2ibench_requests"].samples
                if s.name == "t2ibench_requests_total"}
    assert requests == {"200": 2.0, "400": 1.0, "422": 1.0}
    assert [s.value for s in families["t2ibench_queue_depth"].samples] == [0.0]
    samples = {s.name: s.value for s in families["t2ibench_batch_size"].samples if not s.labels.get("le")}
    assert samples["t2ibench_batch_size_count"] == 2 and samples["t2ibench_batch_size_sum"] == 3
    for name in ("t2ibench_queue_seconds", "t2ibench_compute_seconds", "t2ibench_request_latency_seconds"):
        assert name in families
    latency = {s.name: s.value for s in families["t2ibench_request_latency_seconds"].samples}
    assert latency["t2ibench_request_latency_seconds_count"] == 4


# -- CLI ------------------------------------------------------------------------------------------------
def test_cli_unknown_config_is_one_line_listing_the_configs(capsys):
    from t2ibench.cli import main

    assert main(["serve", "smoke", "--config", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no config 'nope'" in err[0] and "'reference'" in err[0]


def test_cli_takes_batching_defaults_from_the_scenario_and_the_key_from_the_environment(tmp_path, monkeypatch):
    import yaml

    import t2ibench.serving
    from t2ibench.cli import main
    from t2ibench.suites import load_suite

    suite = {"name": "s", "model": "random:tiny-sd", "prompts": ["a"], "seeds": [0],
             "defaults": {**KNOBS, "scenario": {"kind": "server", "rate": 1, "max_batch_size": 4, "max_wait_ms": 20,
                                                "max_queue": 8}},
             "include": [{"name": "plain", "scenario": "single_stream"}]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(suite))
    seen = []
    monkeypatch.setattr(t2ibench.serving, "serve", lambda config, **kw: seen.append((config, kw)) or 0)
    monkeypatch.setenv("T2IBENCH_API_KEY", "from-env")
    server = next(c.name for c in load_suite(tmp_path / "s.yaml").configs() if c.name != "plain")
    assert main(["serve", str(tmp_path / "s.yaml"), "--config", server, "--max-wait-ms", "5", "--port", "0"]) == 0
    assert main(["serve", str(tmp_path / "s.yaml"), "--config", "plain", "--api-key", "given"]) == 0
    (config, kw), (plain, kw2) = seen
    o = kw["options"]
    assert (o.max_batch_size, o.max_wait_ms, o.max_queue, o.port, o.api_key, o.host) == (4, 5, 8, 0, "from-env",
                                                                                          "127.0.0.1")
    o = kw2["options"]
    assert (plain.name, o.max_batch_size, o.max_wait_ms, o.max_queue, o.api_key) == ("plain", 1, 0, 64, "given")


def test_cli_missing_serve_extra_names_it(capsys, monkeypatch):
    import t2ibench.serving
    from t2ibench.cli import main

    monkeypatch.setattr(t2ibench.serving, "missing_packages", lambda: ["fastapi"])
    assert main(["serve", "smoke", "--config", "reference"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["t2ibench: error: t2ibench serve needs fastapi: pip install 't2ibench[serve]'"]


@pytest.mark.parametrize("spec, says", [
    ("{not json", "not valid JSON"),
    ({"model": "random:tiny-sd", "knobs": {"steps": 0}}, "steps"),
    ({"model": "random:tiny-sd", "knobs": {}, "serve": {"max_batch_size": 0}}, "max_batch_size"),
    ({"model": "random:tiny-sd", "knobs": {}, "surve": {}}, "surve"),
    ({"model": "random:nope", "knobs": {}}, "unknown model 'random:nope'"),
    ({"model": "random:tiny-sd", "knobs": {"lora": [{"source": "/nowhere/x.safetensors"}]}}, "does not exist"),
])
def test_entry_bad_input_is_one_line_and_exit_2(tmp_path, spec, says):
    path = tmp_path / "config.json"
    path.write_text(spec if isinstance(spec, str) else json.dumps(spec))
    proc = subprocess.run([sys.executable, "-m", "t2ibench.serving", "--config-json", str(path), "--device", "cpu"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          cwd=tmp_path)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("t2ibench: error:")]
    assert proc.returncode == 2 and len(errors) == 1 and says in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "port").exists()


# -- last: SIGTERM drains the subprocess ----------------------------------------------------------------
def test_sigterm_drains_queued_requests_and_exits_0(served):
    """Four requests of different sizes (so each is its own batch); SIGTERM while three wait in the queue: every
    one still completes, a new one is refused, and the process exits 0."""
    url, proc = served["url"], served["proc"]
    sizes = ["64x64", "64x72", "72x64", "72x72"]
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(generate, url, {"prompt": PROMPTS[i], "seed": i, "size": s, "num_inference_steps": 16},
                               AUTH, 120) for i, s in enumerate(sizes)]

        def queued() -> bool:  # one request runs, three wait
            _, _, text = request(url, "GET", "/metrics")
            return any(line.startswith("t2ibench_queue_depth ") and float(line.split()[1]) >= 3
                       for line in text.splitlines())

        wait_until(queued, 30, "three queued requests", step=0.01)
        proc.send_signal(signal.SIGTERM)
        try:
            late = generate(url, {"prompt": "late", "seed": 0}, AUTH, 10)[0]
        except OSError:  # the listener is already closed
            late = "refused"
        answers = [f.result(120) for f in futures]
    assert late in (503, "refused")
    for size, (status, _, body) in zip(sizes, answers):
        assert status == 200, body
        w, h = (int(v) for v in size.split("x"))
        assert png_pixels(base64.b64decode(body["data"][0]["b64_json"])).shape == (h, w, 3)
    assert proc.wait(timeout=60) == 0
    assert "stopped" in (served["dir"] / "stderr.txt").read_text()
