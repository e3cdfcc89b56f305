"""Load scenarios: a config's requests sent over HTTP at a rate, a concurrency, all at once, or from a trace.

A group of load configs shares one endpoint: the configs' ``backend: http`` endpoint, or ``endpoint: self``
(:class:`~t2ibench.harness.endpoint.SelfServer`: one server subprocess for configs that differ only in their
level). Each config is one *level* (a search is several probe levels and reports its best passing one).

A level is atomic: its requests, cells and images reach the sink together, in one :class:`LevelDone`, after
its last request ended; a level cut short (Ctrl-C, a crash) leaves nothing and is run again whole. Requests
are planned from the config's cells in prompt × seed order (repeated when ``requests`` asks for more); each
(prompt, seed) cell takes the image of its first successful request. Warm-up requests come first and are
excluded from every figure.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

from t2ibench.errors import UserError
from t2ibench.harness.events import ConfigEnded, ConfigFacts, LevelDone, ServedCell
from t2ibench.harness.interrupt import stop_requested
from t2ibench.harness.plan import CellTask, ConfigTask, GroupTask
from t2ibench.store import LevelRow, RequestRow
from t2ibench.suites import Config
from t2ibench.suites.scenario import Concurrency, Offline, Search, Server, Trace

# the scenario's server options: configs equal but for their other scenario fields share one self-served endpoint
SERVER_FIELDS = ("max_batch_size", "max_wait_ms", "max_queue", "exact_batches")  # what endpoint: self's server takes


def serving_key(config: Config) -> tuple:
    """Configs with equal keys share one endpoint: the same remote url, or one self-served config."""
    knobs = config.knobs
    if knobs.backend == "http":
        endpoint = knobs.knob("endpoint")
        return ("http", getattr(endpoint, "url", None))
    scenario = knobs.scenario.model_dump(mode="json")
    served = knobs.replace(scenario="single_stream").model_dump(mode="json")
    return ("self", config.model, tuple(sorted((k, repr(v)) for k, v in served.items())),
            tuple((k, scenario.get(k)) for k in SERVER_FIELDS))


def serve_options(config: Config) -> dict:
    """The server options a self-served config asks for (its scenario's batching and queue)."""
    return {k: getattr(config.knobs.scenario, k) for k in SERVER_FIELDS}


def plan_requests(config: Config, cells: tuple[CellTask, ...], *, n: int | None = None, rate: float | None = None,
                  base_dir: Path | None = None):
    """The level's planned requests (``loadgen.Planned``) and its warm-up ones."""
    from t2ibench.backends.http.client import ImageRequest
    from t2ibench.harness.loadgen import Planned, arrival_times, trace_requests

    knobs, scenario = config.knobs, config.knobs.scenario
    model = getattr(knobs.knob("endpoint"), "model", "") or ""

    def request(text: str, seed: int, **over) -> ImageRequest:
        return ImageRequest(prompt=text, width=over.get("width") or knobs.width, height=over.get("height") or knobs.height,
                            seed=seed, steps=over.get("steps") or knobs.steps, guidance_scale=knobs.guidance_scale,
                            negative_prompt=knobs.negative_prompt, model=model)

    if isinstance(scenario, Trace):
        entries = trace_requests(scenario.path, base_dir or ".")
        by_text = {c.prompt.text: c for c in cells}
        planned = []
        for i, e in enumerate(entries[:scenario.requests] if scenario.requests else entries):
            cell = by_text.get(e["prompt"])
            seed = e.get("seed", cell.seed if cell else i)
            sizes = {k: e.get(k) for k in ("width", "height", "steps")}
            planned.append(Planned(index=i, request=request(e["prompt"], seed, **sizes), at=e["t"] * scenario.time_scale,
                                   prompt_id=cell.prompt.prompt_id if cell else f"trace-{i}", seed=seed,
                                   slo_ms=e.get("slo_ms", scenario.slo_ms)))
    else:
        count = n or scenario.requests or len(cells)
        times = [None] * count
        if isinstance(scenario, Server):
            times = arrival_times(count, rate or scenario.rate, scenario.arrival, scenario.seed)
        elif isinstance(scenario, Offline):
            times = [0.0] * count
        planned = [Planned(index=i, request=request(c.prompt.text, c.seed), at=t, prompt_id=c.prompt.prompt_id,
                           seed=c.seed, slo_ms=scenario.slo_ms)
                   for i, (c, t) in enumerate(zip((cells[i % len(cells)] for i in range(count)), times))]
    warmup = [Planned(index=-1 - i, request=request(c.prompt.text, c.seed), at=None, prompt_id=c.prompt.prompt_id,
                      seed=c.seed, slo_ms=None)
              for i, c in enumerate(cells[i % len(cells)] for i in range(scenario.warmup_requests))]
    return planned, warmup


def attainment(requests: list[RequestRow], slo_ms: float | None) -> float:
    """The share of scheduled requests answered with an image within their SLO (an error is a miss; a request's
    own ``slo_ms``, from a trace, wins over the level's)."""
    if not requests:
        return math.nan
    met = sum(1 for r in requests if not r.error_kind and (r.slo_ms or slo_ms) is not None
              and r.latency_ms <= (r.slo_ms or slo_ms))
    return met / len(requests)


class LevelRunner:
    """Runs the levels of one load group against ``url`` and reports each config to ``sink``."""

    def __init__(self, url: str, sink, *, api_key: str | None = None, base_dir: Path | None = None,
                 log: Callable[[str], None] = lambda m: None):
        self.url = url
        self.sink = sink
        self.api_key = api_key
        self.base_dir = base_dir
        self.log = log

    def run_config(self, task: ConfigTask, facts: ConfigFacts) -> None:
        config, scenario = task.config, task.config.knobs.scenario
        self.sink.config_started(config, len(task.cells))
        if isinstance(scenario, Server) and scenario.search is not None:
            levels = self.search(config, task.cells, scenario.search)
        else:
            rate = scenario.rate if isinstance(scenario, Server) else None
            levels = [(self.level(config, task.cells, 0, rate=rate), True)]
        served_cells: set = set()
        for (level, requests, served), final in levels:
            level = LevelRow(**{**level.__dict__, "final": final})
            self.sink.level_done(LevelDone(config, level, tuple(requests), tuple(served) if final else ()))
            if final:
                served_cells = {(s.cell.prompt.prompt_id, s.cell.seed) for s in served}
        rest = tuple(c for c in task.cells if (c.prompt.prompt_id, c.seed) not in served_cells)
        reason = "" if not rest else "not requested by the level (scenario requests is below the suite's cells)"
        self.sink.config_ended(ConfigEnded(config, "done", reason if rest else "", rest, facts))

    def level(self, config: Config, cells: tuple[CellTask, ...], index: int, rate: float | None = None):
        """One level: (LevelRow, RequestRows, ServedCells)."""
        from t2ibench.backends.http.client import decode_png
        from t2ibench.harness.loadgen import run_level

        scenario = config.knobs.scenario
        planned, warmup = plan_requests(config, cells, rate=rate, base_dir=self.base_dir)
        closed = isinstance(scenario, Concurrency)
        result = run_level(self.url, planned, mode="closed" if closed else "open",
                           concurrency=scenario.concurrency if closed else None,
                           max_in_flight=scenario.max_in_flight, timeout_s=scenario.timeout_s, api_key=self.api_key,
                           duration_s=scenario.duration_s, warmup=warmup, stop=stop_requested)
        requests, served, seen = [], [], set()
        cell_of = {(c.prompt.prompt_id, c.seed): c for c in cells}
        for r in result.records:
            requests.append(RequestRow(
                config_id=config.config_id, level=index, request_index=r.index, scheduled_s=r.scheduled_s,
                done_s=r.done_s, latency_ms=r.latency_ms, prompt_id=r.prompt_id, seed=r.seed, sent_s=r.sent_s,
                first_byte_s=r.first_byte_s, status=r.status, error_kind=r.error_kind, error=r.error, bytes=r.bytes,
                queue_ms=r.queue_ms, compute_ms=r.compute_ms, batch=r.batch, slo_ms=r.slo_ms, capped=r.capped))
            key = (r.prompt_id, r.seed)
            cell = cell_of.get(key)
            if cell is None or key in seen:
                continue
            if r.images and not r.error_kind:
                seen.add(key)
                served.append(ServedCell(cell, r.index, "ok", "", decode_png(r.images[0])))
        for r in result.records:  # a cell none of whose requests succeeded: failed, with its first error
            key = (r.prompt_id, r.seed)
            if key in cell_of and key not in seen:
                seen.add(key)
                served.append(ServedCell(cell_of[key], r.index, "failed", f"{r.error_kind}: {r.error}"[:500], None))
        offered = rate if rate is not None else (scenario.rate if isinstance(scenario, Server) else None)
        level = LevelRow(config_id=config.config_id, level=index, kind=scenario.kind, started_at=result.started_at,
                         duration_s=result.duration_s, n_scheduled=len(result.records), offered_rate=offered,
                         concurrency=scenario.concurrency if closed else None, capped=result.capped)
        return level, requests, served

    def search(self, config: Config, cells: tuple[CellTask, ...], search: Search):
        """MLPerf-style: double from ``low`` until the SLO fails (or use ``high``), then bisect; each probe is a
        level; the best passing probe is final (the lowest probe when none passes)."""
        probes: list[tuple[float, tuple, bool]] = []

        def probe(rate: float) -> bool:
            level = self.level(config, cells, len(probes), rate=rate)
            ok = attainment(level[1], search.slo_ms) >= search.attainment
            probes.append((rate, level, ok))
            self.log(f"  {config.name}: {rate:.3g} req/s {'meets' if ok else 'misses'} the SLO")
            return ok

        low, high = search.low, search.high
        if high is None:
            rate = low
            while probe(rate) and len(probes) < 12:
                rate *= 2
            passing = [r for r, _, ok in probes if ok]
            low, high = (max(passing) if passing else None), rate
        else:
            low = low if probe(low) else None
            if low is not None and probe(high):
                low = high
        if low is not None and low < high:
            for _ in range(search.iterations):
                mid = (low + high) / 2
                if probe(mid):
                    low = mid
                else:
                    high = mid
        passing = [(r, lv) for r, lv, ok in probes if ok]
        best = max(passing, key=lambda p: p[0])[1] if passing else min(probes, key=lambda p: p[0])[1]
        return [(lv, lv is best) for _, lv, _ in probes]


def run_load_group(group: GroupTask, sink, *, device: str, timing, trust_remote_code: bool,
                   base_dir: Path | None = None, log: Callable[[str], None] = lambda m: None) -> None:
    """Every config of a load group: start its endpoint (self-served, or the http backend's), run the levels."""
    import os

    from t2ibench.harness.endpoint import SelfServer, ServerFailed, check_serving_installed

    check_serving_installed()
    first = group.configs[0].config
    t0 = time.perf_counter()
    if first.knobs.backend == "http":
        endpoint = first.knobs.knob("endpoint")
        key = os.environ.get(endpoint.api_key_env) if endpoint.api_key_env else None
        runner = LevelRunner(endpoint.url.rstrip("/"), sink, api_key=key, base_dir=base_dir, log=log)
        for task in group.configs:
            runner.run_config(task, ConfigFacts(load_ms=0.0))
        return
    server = SelfServer(first, device=device, timing=timing, trust_remote_code=trust_remote_code,
                        serve_options=serve_options(first), log=log)
    try:
        server.start()
    except ServerFailed as e:
        server.stop()
        for task in group.configs:
            sink.config_ended(ConfigEnded(task.config, "failed", str(e), task.cells, ConfigFacts()))
        return
    except BaseException:
        server.stop()
        raise
    load_ms = (time.perf_counter() - t0) * 1000.0
    try:
        runner = LevelRunner(server.url, sink, base_dir=base_dir, log=log)
        for task in group.configs:
            runner.run_config(task, ConfigFacts(load_ms=load_ms))
    finally:
        code = server.stop()
        if code not in (0, None, -15):
            log(f"note: the server of '{first.name}' exited with code {code}: {server.tail()}")


def check_trace(config: Config, base_dir: Path | None) -> None:
    """A trace scenario's file must exist (a UserError naming it)."""
    scenario = config.knobs.scenario
    if isinstance(scenario, Trace):
        path = Path(scenario.path)
        path = path if path.is_absolute() or base_dir is None else base_dir / path
        if not path.is_file():
            raise UserError(f"config '{config.name}': trace file '{path}' does not exist")
