"""The plan: which cells still need work, grouped so that each model loads once per load key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from t2ibench.suites import Config, Prompt, Timing


@dataclass(frozen=True)
class CellTask:
    prompt: Prompt
    seed: int


@dataclass(frozen=True)
class ConfigTask:
    config: Config
    cells: tuple[CellTask, ...]


@dataclass(frozen=True)
class GroupTask:
    """Configs sharing one loaded model: the same load key (decided by their backend)."""

    load_key: tuple
    configs: tuple[ConfigTask, ...]

    @property
    def n_cells(self) -> int:
        return sum(len(c.cells) for c in self.configs)


@dataclass(frozen=True)
class RunPlan:
    groups: tuple[GroupTask, ...]
    timing: Timing
    devices: tuple[str, ...]  # where the executor may run groups (one for the local executor)
    skipped_done: int = 0  # cells already in the store
    trust_remote_code: bool = False  # the suite's trust_remote_code: passed to hub/folder pipeline loads
    base_dir: Path | None = None  # the suite file's folder: a trace scenario's path is relative to it

    @property
    def n_cells(self) -> int:
        return sum(g.n_cells for g in self.groups)


def make_plan(configs: list[Config], prompts: list[Prompt], seeds: list[int], done: dict[str, set],
              timing: Timing, devices: tuple[str, ...], trust_remote_code: bool = False,
              base_dir: Path | None = None) -> RunPlan:
    """Group the configs by load key (in order of first appearance) and list their missing cells.

    A load-scenario config (``scenario`` other than single_stream) groups by its endpoint instead
    (:func:`~t2ibench.harness.levels.serving_key`): its levels share one server."""
    from t2ibench.harness.levels import serving_key
    from t2ibench.suites.scenario import is_load

    groups: dict[tuple, list[ConfigTask]] = {}
    skipped = 0
    for config in configs:
        finished = done.get(config.config_id, set())
        cells = tuple(CellTask(p, s) for p in prompts for s in seeds if (p.prompt_id, s) not in finished)
        skipped += len(prompts) * len(seeds) - len(cells)
        if cells:
            key = serving_key(config) if is_load(config.knobs.scenario) else config.load_key()
            groups.setdefault(key, []).append(ConfigTask(config, cells))
    return RunPlan(groups=tuple(GroupTask(k, tuple(v)) for k, v in groups.items()), timing=timing,
                   devices=tuple(devices), skipped_done=skipped, trust_remote_code=trust_remote_code, base_dir=base_dir)
