"""The load generator and the HTTP client against test servers under a real uvicorn (nothing mocked at the HTTP
layer): arrival statistics, no coordinated omission through a server stall, overload accounting, error classes,
the client cap, the closed loop's concurrency, and the http backend's images."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import numpy as np
import pytest
from scipy import stats

pytest.importorskip("aiohttp")
pytest.importorskip("uvicorn")

from serving_apps import MODEL_ID, ImagesApp, Served, expected_pixels  # noqa: E402
from t2ibench.backends.http.client import (ImageRequest, decode_png, make_session, parse_server_timing,  # noqa: E402
                                           post_images)
from t2ibench.errors import SkipConfig, UserError  # noqa: E402
from t2ibench.harness.interrupt import StopRequested  # noqa: E402
from t2ibench.harness.loadgen import Planned, arrival_times, run_level, trace_requests  # noqa: E402
from t2ibench.store import ERROR_KINDS  # noqa: E402

SIZE = 16


def plan(times, prompt="a cat", **kw) -> list[Planned]:
    """One request per send time (None: closed loop / offline); seed = index."""
    return [Planned(i, ImageRequest(f"{prompt}", SIZE, SIZE, seed=i, **kw), f"p{i % 3}", i, at)
            for i, at in enumerate(times)]


def accounted(result, planned) -> None:
    """Every planned request ends as exactly one record, in index order, an answer or a classified error."""
    assert [r.index for r in result.records] == [p.index for p in planned]
    for r in result.records:
        assert r.error_kind in ("", *ERROR_KINDS)
        assert (r.error_kind == "") == (r.status == 200) == bool(r.images)
        assert r.done_s >= r.scheduled_s and (r.sent_s is None or r.sent_s >= r.scheduled_s - 1e-6)
        assert r.latency_ms == pytest.approx((r.done_s - r.scheduled_s) * 1000)


# --- arrivals ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_poisson_gaps_are_exponential_and_counts_poisson(seed):
    rate = 40.0
    times = np.array(arrival_times(4000, rate, "poisson", seed))
    gaps = np.diff(np.concatenate([[0.0], times]))
    assert times[0] == gaps[0] == np.random.default_rng(seed).exponential(1 / rate)  # the first at the first gap
    assert np.all(gaps > 0)
    # the mean gap within 4.5 standard errors of 1/rate, and the KS test does not reject the exponential
    assert abs(gaps.mean() - 1 / rate) < 4.5 * (1 / rate) / np.sqrt(len(gaps))
    assert stats.kstest(gaps, "expon", args=(0, 1 / rate)).pvalue > 1e-3
    # arrivals in a window of 50 s: Poisson(rate * 50) within its 0.05%..99.95% quantiles; so are disjoint windows
    for lo, hi in ((0, 50), (50, 90)):
        count = int(np.sum((times >= lo) & (times < hi)))
        mu = rate * (hi - lo)
        assert stats.poisson.ppf(0.0005, mu) <= count <= stats.poisson.ppf(0.9995, mu)
    assert arrival_times(50, rate, "poisson", seed) == times[:50].tolist()  # the same instants every run


def test_constant_arrivals_and_bad_rates():
    assert arrival_times(4, 2.0, "constant", 7) == [0.0, 0.5, 1.0, 1.5]
    with pytest.raises(ValueError):
        arrival_times(3, 0.0, "poisson", 0)
    with pytest.raises(ValueError):
        arrival_times(3, 1.0, "bursty", 0)


def test_open_loop_sends_on_schedule_and_the_server_sees_poisson_counts():
    app = ImagesApp(delay=0.002)
    times = arrival_times(160, 80.0, "poisson", 11)
    planned = plan(times)
    with Served(app) as url:
        app.reset()
        result = run_level(url, planned, mode="open")
    accounted(result, planned)
    assert all(r.ok for r in result.records) and app.completed == len(planned)
    lags = np.array([r.sent_s - r.scheduled_s for r in result.records])
    # sends follow the schedule (lenient: the server shares this process, and CI shares its cores)
    assert np.median(lags) < 0.01 and np.percentile(lags, 95) < 0.1, np.sort(lags)[-10:]
    arrivals = np.array(sorted(app.arrivals))
    half = times[-1] / 2  # the server counts what the schedule says, within the Poisson bounds of the rate
    count = int(np.sum(arrivals - arrivals[0] + times[0] < half))
    assert stats.poisson.ppf(0.0005, 80 * half) <= count <= stats.poisson.ppf(0.9995, 80 * half)
    assert abs(count - sum(t < half for t in times)) <= 5
    assert result.duration_s == pytest.approx(max(r.done_s for r in result.records) - times[0])


# --- no coordinated omission ------------------------------------------------------------------------------

def test_a_server_stall_shows_in_the_latency_of_every_request_scheduled_during_it():
    """The server holds everything from t=1 s to t=3 s. Requests scheduled in the stall are still sent on time,
    and their latency, from the scheduled time, includes the rest of the stall."""
    a, d = 1.0, 2.0
    app = ImagesApp(delay=0.05, stall=(a, d))
    planned = plan(arrival_times(100, 20.0, "constant", 0))  # every 50 ms for 5 s
    with Served(app) as url:
        app.reset()  # the stall's clock starts just before the level's (the offset only shortens it)
        result = run_level(url, planned, mode="open", timeout_s=30)
    accounted(result, planned)
    assert all(r.ok for r in result.records)
    during = [r for r in result.records if a + 0.05 <= r.scheduled_s <= a + d - 0.1]
    assert len(during) >= 35
    for r in during:
        assert r.sent_s - r.scheduled_s < 0.2  # the schedule did not wait for the stalled answers (up to 2 s)
        assert r.latency_ms / 1000 >= (a + d) - r.scheduled_s  # ... and the wait is in the latency
    after = [r for r in result.records if r.scheduled_s >= a + d + 0.5]
    assert after and max(r.latency_ms for r in after) < 1000  # after the stall, back to the server's delay
    assert app.max_concurrency >= len(during)  # all of them were at the server at once


def test_latencies_follow_a_known_delay_distribution_exactly():
    """A quarter of the requests (seed % 4 == 0) take 0.3 s at the server, the rest 0.01 s: with an SLO of 150 ms,
    exactly those miss it, and the Server-Timing compute of each is its delay."""
    app = ImagesApp(delay=lambda body: 0.3 if body["seed"] % 4 == 0 else 0.01)
    planned = [Planned(i, ImageRequest("a cat", SIZE, SIZE, seed=i), "p0", i, at, slo_ms=150.0)
               for i, at in enumerate(arrival_times(40, 20.0, "poisson", 5))]
    with Served(app) as url:
        result = run_level(url, planned, mode="open")
    accounted(result, planned)
    within = [r.latency_ms <= r.slo_ms for r in result.records]
    assert within == [r.seed % 4 != 0 for r in result.records] and sum(within) / len(within) == 0.75
    for r in result.records:
        delay_ms = 300 if r.seed % 4 == 0 else 10
        assert delay_ms <= r.compute_ms < delay_ms + 50
        assert r.latency_ms >= r.compute_ms


# --- overload and errors -----------------------------------------------------------------------------------

def test_overload_counts_503s_and_accounts_for_every_scheduled_request():
    app = ImagesApp(delay=0.05, capacity=1, queue=2)  # ~20 requests/s
    planned = plan(arrival_times(150, 300.0, "poisson", 3))
    t0 = time.monotonic()
    with Served(app) as url:
        app.reset()
        result = run_level(url, planned, mode="open", timeout_s=10)
    assert time.monotonic() - t0 < planned[-1].at + 10 + 5  # bounded
    accounted(result, planned)
    kinds = [r.error_kind for r in result.records]
    assert kinds.count("rejected") == app.rejected > 50
    assert kinds.count("") == app.completed >= 3
    assert kinds.count("") + kinds.count("rejected") == len(planned)
    rejected = [r for r in result.records if r.error_kind == "rejected"]
    assert all(r.status == 503 and "queue full" in r.error for r in rejected)
    ok = [r for r in result.records if r.ok]
    assert all(r.compute_ms >= 49 and r.batch == 1 and r.queue_ms >= 0 for r in ok)  # Server-Timing read


def test_errors_are_classified():
    app = ImagesApp()
    planned = plan([0.0] * 4)
    statuses = {"status=400": ("http_4xx", 400), "status=500": ("http_5xx", 500), "status=504": ("http_5xx", 504),
                "status=503": ("rejected", 503), "status=422": ("http_4xx", 422)}
    planned = [Planned(i, ImageRequest(p, SIZE, SIZE, seed=i), f"p{i}", i, 0.0) for i, p in enumerate(statuses)]
    with Served(app) as url:
        result = run_level(url, planned, mode="open", timeout_s=5)
        wrong_path = run_level(url + "/nope", plan([0.0]), mode="open", timeout_s=5)
    accounted(result, planned)
    assert [(r.error_kind, r.status) for r in result.records] == list(statuses.values())
    assert all("asked for" in r.error and r.queue_ms == 0 for r in result.records)  # message and timing of errors
    assert wrong_path.records[0].error_kind == "http_4xx" and wrong_path.records[0].status == 404


def test_timeouts_and_refused_connections_are_classified():
    slow = ImagesApp(delay=3.0)
    planned = plan([0.0, 0.0, 0.1])
    with Served(slow) as url:
        result = run_level(url, planned, mode="open", timeout_s=0.3)
    accounted(result, planned)
    for r in result.records:
        assert r.error_kind == "timeout" and r.status is None and r.first_byte_s is None
        assert 0.29 <= r.done_s - r.sent_s < 1.0
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    refused = run_level(f"http://127.0.0.1:{port}", plan([0.0, 0.05]), mode="open", timeout_s=5)
    assert [r.error_kind for r in refused.records] == ["connection"] * 2
    assert all(r.status is None and "Connect" in r.error for r in refused.records)


def test_the_client_cap_delays_sends_but_latency_counts_from_the_schedule():
    """max_in_flight 1 against a 0.2 s server: the 4 requests scheduled at 0 are sent one after another; the last
    waits 0.6 s for its slot, is marked capped, and its latency includes that wait."""
    app = ImagesApp(delay=0.2)
    planned = plan([0.0] * 4)
    with Served(app) as url:
        result = run_level(url, planned, mode="open", max_in_flight=1)
    accounted(result, planned)
    assert app.max_concurrency == 1 and result.capped == 3
    assert [r.capped for r in result.records] == [False, True, True, True]
    sends = [r.sent_s for r in result.records]
    assert all(b - a >= 0.19 for a, b in zip(sends, sends[1:]))
    last = result.records[-1]
    assert last.latency_ms >= 790 and last.latency_ms == pytest.approx((last.done_s - 0.0) * 1000)


def test_capped_requests_still_open_at_the_end_are_timeouts():
    app = ImagesApp(delay=5.0)
    planned = plan([0.0, 0.0, 0.0])
    with Served(app) as url:
        result = run_level(url, planned, mode="open", max_in_flight=1, timeout_s=0.25)
    accounted(result, planned)
    assert [r.error_kind for r in result.records] == ["timeout"] * 3 and result.capped == 2
    assert result.records[2].latency_ms >= 740  # three timeouts in a row, counted from the scheduled time 0


# --- closed loop, offline, duration, warm-up, stop ---------------------------------------------------------

def test_closed_loop_keeps_exactly_n_in_flight():
    app = ImagesApp(delay=0.1)
    planned = plan([None] * 15)
    with Served(app) as url:
        result = run_level(url, planned, mode="closed", concurrency=3)
    accounted(result, planned)
    assert all(r.ok for r in result.records) and app.max_concurrency == 3
    events = sorted([(r.sent_s, 1) for r in result.records] + [(r.done_s, -1) for r in result.records],
                    key=lambda e: (e[0], e[1]))
    assert max(np.cumsum([e[1] for e in events])) == 3
    assert result.duration_s >= 5 * 0.1  # 15 requests, 3 at a time, 0.1 s each
    # a worker's next request is handed out when its previous one ends
    starts = sorted(r.scheduled_s for r in result.records)
    assert starts[3] >= min(r.done_s for r in result.records) - 1e-6


def test_offline_sends_everything_at_once_and_duration_drops_later_requests():
    app = ImagesApp(delay=0.05)
    with Served(app) as url:
        offline = run_level(url, plan([None] * 8), mode="open", max_in_flight=4)
        app.reset()
        timed = run_level(url, plan(arrival_times(40, 20.0, "constant", 0)), mode="open", duration_s=0.5)
        closed = run_level(url, plan([None] * 50), mode="closed", concurrency=2, duration_s=0.3)
    assert all(r.scheduled_s == 0.0 and r.ok for r in offline.records) and offline.capped == 4
    assert app.completed == 11 + len(closed.records)
    assert [r.index for r in timed.records] == list(range(11))  # at 0, 0.05 … 0.5
    assert 4 <= len(closed.records) <= 16 and [r.index for r in closed.records] == list(range(len(closed.records)))
    assert all(r.scheduled_s <= 0.3 for r in closed.records)


def test_warmup_requests_are_sent_first_and_never_recorded():
    app = ImagesApp()
    with Served(app) as url:
        result = run_level(url, plan([0.0, 0.01]), mode="open", warmup=plan([None] * 3, prompt="warm"))
    assert len(result.records) == 2 and app.completed == 5
    assert all(r.index in (0, 1) for r in result.records)


def test_stop_aborts_the_level_promptly():
    app = ImagesApp(delay=10.0)
    t0 = time.monotonic()
    with Served(app) as url:
        with pytest.raises(StopRequested):
            run_level(url, plan([0.0, 0.1, 5.0]), mode="open", stop=lambda: time.monotonic() - t0 > 0.3)
        assert time.monotonic() - t0 < 2.0


def test_run_level_works_from_inside_an_event_loop():
    app = ImagesApp()

    async def inside(url):
        return run_level(url, plan([0.0]), mode="open")
    with Served(app) as url:
        result = asyncio.run(inside(url))
    assert result.records[0].ok


# --- the client ----------------------------------------------------------------------------------------------

def test_request_body_and_server_timing():
    assert ImageRequest("a cat", 64, 32).body() == {"prompt": "a cat", "n": 1, "size": "64x32",
                                                    "response_format": "b64_json"}
    full = ImageRequest("x", 8, 16, seed=3, steps=4, guidance_scale=1.5, negative_prompt="blur", n=2, model="m")
    assert full.body() == {"prompt": "x", "n": 2, "size": "8x16", "response_format": "b64_json", "model": "m",
                           "seed": 3, "num_inference_steps": 4, "guidance_scale": 1.5, "negative_prompt": "blur"}
    assert parse_server_timing("queue;dur=12.5, compute;dur=300, batch;desc=4") == (12.5, 300.0, 4)
    assert parse_server_timing('compute;dur=7;desc="x", batch;desc="2", other;dur=1') == (None, 7.0, 2)
    assert parse_server_timing("queue;dur=abc, batch") == (None, None, None)
    assert parse_server_timing(None) == (None, None, None)


def test_post_images_returns_the_servers_pngs():
    app = ImagesApp(api_key="k3y")

    async def go(url):
        async with make_session(2) as session:
            good = await post_images(session, url, ImageRequest("a cat", 24, 16, seed=5, steps=3, n=2),
                                     api_key="k3y", timeout_s=5)
            bad = await post_images(session, url, ImageRequest("a cat", 24, 16), api_key="nope", timeout_s=5)
        return good, bad
    with Served(app) as url:
        good, bad = asyncio.run(go(url))
    assert good.ok and good.status == 200 and len(good.images) == 2
    for i, png in enumerate(good.images):
        assert np.array_equal(decode_png(png), expected_pixels("a cat", 5 + i, 24, 16, 3))
    assert good.sent <= good.first_byte <= good.done and good.bytes > sum(map(len, good.images))
    assert bad.error_kind == "http_4xx" and bad.status == 401 and "API key" in bad.error and not bad.images


# --- the http backend ------------------------------------------------------------------------------------------

def test_http_backend_single_stream_returns_the_servers_images(monkeypatch):
    from t2ibench.backends import BACKENDS
    from t2ibench.backends.http.client import EndpointError
    from t2ibench.suites.knobs import Knobs

    app = ImagesApp(api_key="s3cret")
    monkeypatch.setenv("T2I_TEST_KEY", "s3cret")
    with Served(app) as url:
        knobs = Knobs(backend="http", steps=3, width=32, height=24, prompt_suffix=", oil",
                      endpoint={"url": url + "/", "api_key_env": "T2I_TEST_KEY", "timeout_s": 5})
        model = BACKENDS.get("http").make_engine().load("ignored", knobs, "cpu")
        try:
            assert model.configure(knobs) == {"endpoint": url, "model": MODEL_ID}
            out = model.generate(["a cat", "a dog"], [1, 2], knobs)
            with pytest.raises(EndpointError, match="rejected: HTTP 503"):
                model.generate(["status=503"], [0], knobs)
        finally:
            model.close()
    assert [img.status for img in out.images] == ["ok", "ok"]
    for img, prompt, seed in zip(out.images, ["a cat", "a dog"], [1, 2]):
        assert np.array_equal(img.pixels, expected_pixels(prompt + ", oil", seed, 32, 24, 3))
    assert out.timing.latency_ms == out.timing.denoise_ms > 0 and model.closed


def test_http_backend_preflight_and_load_errors(monkeypatch):
    from t2ibench.backends import BACKENDS
    from t2ibench.suites.knobs import Knobs

    spec = BACKENDS.get("http")
    (none,) = [f for f in spec.check_config("m", Knobs(backend="http"), None) if f.level == "error"]
    assert none.knob == "endpoint" and "needs endpoint: {url: http://host:port}" in none.message
    monkeypatch.delenv("T2I_UNSET_KEY", raising=False)
    knobs = Knobs(backend="http", endpoint={"url": "http://127.0.0.1:1", "api_key_env": "T2I_UNSET_KEY"})
    (unset,) = spec.check_config("m", knobs, None)
    assert unset.level == "error" and "T2I_UNSET_KEY" in unset.message and unset.path == ("api_key_env",)
    with pytest.raises(UserError, match="T2I_UNSET_KEY"):
        spec.make_engine().load("m", knobs, "cpu")
    for bad in ("ftp://host:1", "127.0.0.1:8000", "http://host:99999", "http://host/?q=1"):
        with pytest.raises(ValueError, match="endpoint"):
            Knobs(backend="http", endpoint={"url": bad})
    with pytest.raises(ValueError, match="belongs to backend 'http'"):
        Knobs(backend="torch", endpoint={"url": "http://127.0.0.1:8000"})
    fp16 = Knobs(backend="http", precision="fp16", vae_tiling=True, endpoint={"url": "http://127.0.0.1:1"})
    assert [(f.level, f.knob) for f in spec.check_config("m", fp16, None)] == [("skip", "precision"),
                                                                                ("skip", "vae_tiling")]
    model = spec.make_engine().load("m", fp16, "cpu")
    try:
        with pytest.raises(SkipConfig, match="precision is decided by the server"):
            model.configure(fp16)  # the engine says what the preflight said
    finally:
        model.close()


# --- traces --------------------------------------------------------------------------------------------------

def test_trace_requests_reads_jsonl_and_names_the_bad_line(tmp_path):
    lines = [{"t": 0, "prompt": "a cat", "width": 64, "height": 32, "steps": 4, "seed": 1, "slo_ms": 500},
             {"t": 0.5}, {"t": 1.25, "prompt": "x", "seed": None}]
    (tmp_path / "trace.jsonl").write_text("\n".join(json.dumps(x) for x in lines[:2]) + "\n\n" + json.dumps(lines[2]))
    assert trace_requests("trace.jsonl", tmp_path) == lines
    cases = {'{"t": 1, "prompt": "a"}\n{"t": -1}': (2, "t must be"),
             '{"t": 1}\nnot json': (2, "not a JSON object"),
             '{"prompt": "a"}': (1, "missing 't'"),
             '{"t": 0, "width": 30}': (1, "multiple of 8"),
             '{"t": 0, "steps": "4"}': (1, "steps must be int"),
             '{"t": 0, "seeds": 4}': (1, "unknown field 'seeds'"),
             '[1, 2]': (1, "JSON object"),
             '{"t": true}': (1, "t must be")}
    for i, (text, (line, message)) in enumerate(cases.items()):
        (tmp_path / f"bad{i}.jsonl").write_text(text)
        with pytest.raises(UserError, match=f"bad{i}.jsonl:{line}: .*{message}"):
            trace_requests(f"bad{i}.jsonl", tmp_path)
    with pytest.raises(UserError, match="cannot read"):
        trace_requests("missing.jsonl", tmp_path)
