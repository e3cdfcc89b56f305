"""Score a run's stored images with the suite's metrics and write the rows to the store."""

from __future__ import annotations

from typing import Callable

from t2ibench.harness.store import RunStore
from t2ibench.suites import Suite


def _resolved_metrics(suite: Suite) -> dict:
    """The suite's metric options with ``against:`` folders and .npz files resolved against the suite's folder."""
    out = {}
    for name, options in suite.metrics.items():
        against = getattr(options, "against", "reference")
        if against != "reference":
            options = options.model_copy(update={"against": str(suite.resolve_path(against))})
        out[name] = options
    return out


def score_run(store: RunStore, suite: Suite, device: str, log: Callable[[str], None] = lambda m: None) -> None:
    """Metrics over the ok images of the suite's configs; features are cached in the run directory."""
    from t2ibench.metrics.evaluate import ImageRecord, evaluate
    from t2ibench.reports.tables import cell_records

    images = [
        ImageRecord(c["config_id"], c["prompt_id"], c["prompt"], c["seed"], store.run_dir / c["image_path"])
        for c in cell_records(store) if c["status"] == "ok" and c["image_path"]
    ]
    if not images:
        log("no images to score")
        return
    reference = next((c.config_id for c in suite.configs() if c.is_reference), None)
    log(f"scoring {len(images)} images: {', '.join(suite.metrics)}")
    results = evaluate(_resolved_metrics(suite), images, reference, device=device,
                       cache_dir=store.run_dir / "features")
    store.put_metrics(results)
    for note in dict.fromkeys(n for r in results for n in r.extra.get("notes", []) if "random weights" not in n):
        log(f"note: {note}")
