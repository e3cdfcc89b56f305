"""A run store built by hand with load-scenario configs: levels and requests of a known delay distribution."""

from __future__ import annotations

from pathlib import Path

from t2ibench.store import CallRow, CellRow, RunStore
from t2ibench.store.runstore import LevelRow, RequestRow
from t2ibench.suites.knobs import Knobs
from t2ibench.suites.schema import Config, Suite

PROMPTS = ["a red cube", "a lighthouse"]


def serving_suite(scenarios: list, name: str = "sv") -> Suite:
    """A suite whose matrix is ``scenario: scenarios`` (list levels expand to one config each)."""
    return Suite.model_validate({"name": name, "model": "random:tiny-sd", "prompts": PROMPTS, "seeds": [0],
                                 "defaults": {"steps": 2, "width": 64, "height": 64},
                                 "matrix": {"scenario": scenarios}})


def requests_of(config_id: str, latencies: list[float], errors: dict[int, str] | None = None, *, level: int = 0,
                gap_s: float = 0.01, slo_ms: dict[int, float] | None = None, queue_ms: float | None = None,
                batch: int | None = None) -> list[RequestRow]:
    """One request per latency, scheduled ``gap_s`` apart; ``errors``: index → error kind (no image)."""
    errors, slo_ms = errors or {}, slo_ms or {}
    rows = []
    for i, ms in enumerate(latencies):
        kind = errors.get(i, "")
        status = {"": 200, "rejected": 503, "timeout": None, "http_5xx": 500, "http_4xx": 400,
                  "connection": None}[kind]
        rows.append(RequestRow(config_id, level, i, scheduled_s=i * gap_s, done_s=i * gap_s + ms / 1000,
                               latency_ms=ms, prompt_id=PROMPTS[i % 2], seed=0, sent_s=i * gap_s, status=status,
                               error_kind=kind, error="" if not kind else f"{kind} happened",
                               queue_ms=None if kind else queue_ms,
                               compute_ms=None if kind or queue_ms is None else ms - queue_ms,
                               batch=None if kind else batch, slo_ms=slo_ms.get(i)))
    return rows


def put_level(store: RunStore, config_id: str, requests: list[RequestRow], *, duration_s: float,
              offered_rate: float | None, level: int = 0, final: bool = True, capped: int = 0) -> None:
    store.put_level(LevelRow(config_id, level, "server", 1.7e9, duration_s, len(requests), offered_rate=offered_rate,
                             capped=capped, final=final), requests)


def named_config(name: str, scenario) -> Config:
    """A config of the test model with the given name and scenario knob."""
    return Config(name=name, model="random:tiny-sd", knobs=Knobs(steps=2, width=64, height=64, scenario=scenario))


def build_store(run_dir: Path, suite: Suite | list[Config], offline_ms: float = 100.0,
                name: str = "sv") -> tuple[RunStore, dict[str, str]]:
    """A writable store holding ``suite``'s configs (or the given ones), each with one ok cell per prompt (a call
    each, of ``offline_ms``); returns it and config name → config_id. Levels are the caller's to add."""
    store = RunStore.open(run_dir, write=True)
    ids = {}
    configs = suite.configs() if isinstance(suite, Suite) else suite
    name = suite.name if isinstance(suite, Suite) else name
    for pos, cfg in enumerate(configs):
        ids[cfg.name] = cfg.config_id
        store.add_config(pos, cfg)
        store.update_config(cfg.config_id, status="done")
        for i, prompt in enumerate(PROMPTS):
            store.put_cells([CellRow(cfg.config_id, f"p{i}", 0, prompt, None, "ok",
                                     call_index=i, image_path=f"images/{cfg.config_id}/p{i}-0.png")],
                            CallRow(cfg.config_id, i, "ok", 1, 1, samples=[offline_ms], latency_ms=offline_ms,
                                    encode_ms=1.0, denoise_ms=offline_ms - 2, decode_ms=1.0, step_ms=[1.0]))
    store.set_meta("suite", {"name": name, "configs": [{"config_id": c.config_id} for c in configs],
                             "gates": {}})
    return store, ids
