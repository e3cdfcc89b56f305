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


# -- naming configs in plots and tables ----------------------------------------------------------------------------


def is_unset(value) -> bool:
    """Whether a knob value means 'left unset' (None, '', an empty list or mapping, or their JSON)."""
    if isinstance(value, float):
        return value != value  # NaN: a results.csv read back
    return value is None or value in ("", "[]", "{}", "null") or (isinstance(value, (list, tuple, dict)) and not value)


def varying_knobs(rows: list[dict]) -> list[str]:
    """The knobs whose values differ between the configs, in results.csv's order; a measurement knob (``profile``)
    does not set configs apart."""
    from t2ibench.suites.knobs import KNOB_NAMES, MEASUREMENT_KNOBS

    return [k for k in KNOB_NAMES if k not in MEASUREMENT_KNOBS and len({knob_key(r.get(k)) for r in rows}) > 1]


def knob_label(knob: str, value) -> str:
    """``knob=value`` as plots and tables show it; a boolean set to true is its name alone; '' when the knob is
    unset or false (a config's label leaves it out)."""
    if is_unset(value) or value is False or value in ("false", "False"):
        return ""
    if value is True or value in ("true", "True"):
        return knob
    return f"{knob}={knob_text(value)}"


def distinguishing_knobs(rows: list[dict]) -> list[dict[str, str]]:
    """For each config, the knobs that differ between the configs as knob → ``knob=value`` (the knobs all configs
    share are left out, and so are the ones this config leaves unset). Every plot and the tables name configs by
    these."""
    varying = varying_knobs(rows)
    return [{k: text for k in varying if (text := knob_label(k, r.get(k)))} for r in rows]


def config_labels(rows: list[dict]) -> list[str]:
    """One unique label per config: its distinguishing knobs, else its name (the only config, or knobs that read
    the same); a label two configs share gets the config name added."""
    texts = [" ".join(d.values()) or str(r.get("config", "")) for r, d in zip(rows, distinguishing_knobs(rows))]
    texts = [t if texts.count(t) == 1 or t == str(r.get("config")) else f"{t} ({r.get('config')})"
             for t, r in zip(texts, rows)]
    return [t if texts.count(t) == 1 else f"{t} #{i + 1}" for i, t in enumerate(texts)]


def short_ids(rows: list[dict]) -> list[str]:
    """The configs' short ids, C1, C2… in row order: what plot points carry and the key tables explain."""
    return [f"C{i + 1}" for i in range(len(rows))]


def effect_groups(rows: list[dict], knob: str) -> list[tuple[str, list[dict]]]:
    """The configs that differ only in ``knob``: groups of configs sharing the values of every other knob, each
    with a label naming those values ('' when no other knob varies). Only groups with two or more values of
    ``knob`` are kept (a single config shows no effect)."""
    others = [k for k in varying_knobs(rows) if k != knob]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(knob_key(r.get(k)) for k in others), []).append(r)
    out = []
    for members in groups.values():
        if len({knob_key(r.get(knob)) for r in members}) > 1:
            text = " ".join(t for k in others if (t := knob_label(k, members[0].get(k)))) or \
                " ".join(f"{k}={'none' if is_unset(members[0].get(k)) else 'off'}" for k in others)
            out.append((text, members))
    return out


def knob_key(value) -> str:
    """A knob value as a comparable key (JSON text and its parsed value compare equal)."""
    import json

    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    if is_unset(value):
        return "null"
    return json.dumps(value, sort_keys=True, default=str)
