"""The MLPerf Inference SDXL verdict: PASS or FAIL of a config run with MLPerf's settings, against its
accepted ranges, and what the run lacks to be an MLPerf result at all.

MLPerf's SDXL benchmark (the reference implementation's accuracy check): SDXL base 1.0, EulerDiscrete,
20 steps, guidance 8, 1024², on the 5,000 COCO-2014 captions; accepted FID 23.0109–23.9501 (against
the COCO-2014 validation statistics) and CLIP score 31.6863–31.8133 (ViT-B-32/openai); in the Server
scenario, p99 latency ≤ 20 s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

SETTINGS = {"steps": 20, "guidance_scale": 8.0, "width": 1024, "height": 1024, "scheduler": "euler"}
MODEL = "stabilityai/stable-diffusion-xl-base-1.0"
RANGES = {"fid": (23.0109, 23.9501), "clip_score": (31.6863, 31.8133)}
SERVER_P99_MS = 20_000.0
CAPTIONS = 5000


@dataclass(frozen=True)
class Verdict:
    """One config's verdict: ``passed`` only when every check passed and nothing is missing."""

    config: str
    checks: list[tuple[str, bool, str]]  # (what, passed, detail)
    missing: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(ok for _, ok, _ in self.checks) and not self.missing

    def lines(self) -> list[str]:
        head = f"MLPerf SDXL {'PASS' if self.passed else 'FAIL'}: {self.config}"
        out = [head] + [f"  {'pass' if ok else 'FAIL'}  {what}: {detail}" for what, ok, detail in self.checks]
        out += [f"  missing: {m}" for m in self.missing]
        return out


def mlperf_configs(suite: Mapping) -> list[Mapping]:
    """The suite's configs run with MLPerf's sampler settings (the suite's resolved form)."""
    return [c for c in suite.get("configs") or []
            if all(c.get("knobs", {}).get(k) == v for k, v in SETTINGS.items())]


def _missing(suite: Mapping, config: Mapping, row: Mapping) -> list[str]:
    """The prerequisites of an MLPerf result that this run lacks."""
    out = []
    source, prompts = suite.get("prompt_source") or {}, suite.get("prompts") or []
    if len(prompts) != CAPTIONS or str(source.get("source", "")).lower() == "parti":
        out.append(f"MLPerf's {CAPTIONS:,} COCO-2014 captions (this run has {len(prompts):,} prompts from "
                   f"{source.get('source', '?')})")
    against = str(((suite.get("metrics") or {}).get("fid") or {}).get("against", ""))
    if not against.lower().endswith(".npz") or not Path(against).is_file():
        out.append("the COCO-2014 validation statistics file for FID (fid.against: an .npz; "
                   f"{against or 'none'} was not found)")
    model = str(config.get("model") or suite.get("model", ""))
    random_metrics = [m for m in str(row.get("random_weights") or "").split(",") if m]
    if model.startswith("random:") or random_metrics:
        what = [f"the model ({model})"] if model.startswith("random:") else []
        out.append("the real weights: " + ", ".join(what + [f"{m}'s network" for m in random_metrics])
                   + " has random weights")
    elif model != MODEL:
        out.append(f"SDXL base 1.0 ({MODEL}); this run used {model}")
    return out


def _measured(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _range_check(row: Mapping, metric: str) -> tuple[str, bool, str]:
    lo, hi = RANGES[metric]
    value = row.get(metric)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return metric, False, f"not measured (accepted {lo}–{hi})"
    return metric, lo <= value <= hi, f"{value:.4f} (accepted {lo}–{hi})"


def verdicts(suite: Mapping, rows: list[Mapping]) -> list[Verdict]:
    """A verdict for each config run with MLPerf's settings (none for any other suite)."""
    wanted = {c["config_id"]: c for c in mlperf_configs(suite)}
    out = []
    for row in rows:
        config = wanted.get(row.get("config_id"))
        if config is None:
            continue
        checks = [_range_check(row, "fid"), _range_check(row, "clip_score")]
        p99 = row.get("latency_ms_p99")
        served = str(row.get("scenario") or "").split(" ")[0] in ("server", "Server")  # a label: "server rate=2"
        if served or (_measured(p99) and _measured(row.get("offered_rate"))):
            ok = _measured(p99) and p99 <= SERVER_P99_MS
            shown = f"{p99:.0f} ms" if _measured(p99) else "not measured"
            checks.append(("Server p99", ok, f"{shown} (bound {SERVER_P99_MS:.0f} ms)"))
        out.append(Verdict(str(row.get("config")), checks, _missing(suite, config, row)))
    return out
