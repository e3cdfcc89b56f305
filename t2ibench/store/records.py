"""Readers over a store, scoped to the suite last run in its directory."""

from __future__ import annotations

from t2ibench.store.runstore import RunStore


def current_suite(store: RunStore) -> dict:
    """The resolved suite of the last session written into this directory."""
    return store.get_meta("suite", {}) or {}


def scope(store: RunStore) -> tuple[list[dict], set[tuple[str, int]] | None]:
    """Configs and (prompt_id, seed) pairs of the suite last run in this directory."""
    suite = current_suite(store)
    wanted = {c["config_id"] for c in suite.get("configs", [])}
    configs = [c for c in store.configs() if not wanted or c["config_id"] in wanted]
    pairs = {(p["prompt_id"], s) for p in suite.get("prompts", []) for s in suite.get("seeds", [])} or None
    return configs, pairs


def cell_records(store: RunStore) -> list[dict]:
    """The cells of the current suite, each with its config's name under ``config``."""
    configs, pairs = scope(store)
    names = {c["config_id"]: c["name"] for c in configs}
    return [
        dict(c, config=names[c["config_id"]]) for c in store.cells()
        if c["config_id"] in names and (pairs is None or (c["prompt_id"], c["seed"]) in pairs)
    ]


def call_records(store: RunStore, cells: list[dict] | None = None) -> list[dict]:
    """The calls of the current suite's configs that produced at least one of its cells."""
    cells = cell_records(store) if cells is None else cells
    used = {(c["config_id"], c["call_index"]) for c in cells if c["call_index"] is not None}
    return [c for c in store.calls() if (c["config_id"], c["call_index"]) in used]
