"""How reports name and orient a results column: from the metric registry, else the column's own name."""

from __future__ import annotations


def label(column: str) -> str:
    """The display label of a column (``fid`` → ``FID``); unregistered columns keep their name."""
    from t2ibench.metrics.registry import column as registered

    c = registered(column)
    return c.label if c is not None else column


def higher_is_better(column: str) -> bool:
    """A metric column's direction from its registration (True for unregistered columns)."""
    from t2ibench.metrics.registry import column as registered

    c = registered(column)
    return c.higher_is_better if c is not None else True


def knob_text(value) -> str:
    """A knob's value as a report shows it: structured knobs in a few words (``torchao int8dq``,
    ``first_block threshold=0.3``, ``random:a ×0.8 fused``); '–' for a knob left unset.
    results.csv keeps the full JSON."""
    import json

    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    if value is None or value == "" or value == [] or value == {}:
        return "–"
    if isinstance(value, list):
        return ", ".join(knob_text(v) for v in value)
    if not isinstance(value, dict):
        return str(value)
    if "source" in value:  # a LoRA adapter
        return f"{value['source']} ×{value.get('scale', 1.0):g}" + (" fused" if value.get("fuse") else "")
    if "type" in value and "backend" in value:  # quantize
        parts = [value["backend"], value["type"]]
        if value.get("components") not in (None, ["denoiser"]):
            parts.append("+".join(value["components"]))
        return " ".join(parts)
    head = [str(value[k]) for k in ("method", "kind", "storage") if k in value]
    rest = [f"{k}={_plain(v)}" for k, v in sorted(value.items())
            if k not in ("method", "kind", "storage") and v not in (None, False, [], {})]
    return " ".join(head + rest) or "on"


def _plain(v) -> str:
    return "+".join(map(str, v)) if isinstance(v, list) else str(v)
