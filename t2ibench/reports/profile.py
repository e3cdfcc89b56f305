"""Profiles in the report: each profiled config's top operators, and what changed between two configs.

The store keeps the top operators of each profiled call (``profile_ops``); the diff compares two configs
operator by operator, by name: the ratio of self times, and the operators that are new in the candidate's
top list or vanished from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape


@dataclass(frozen=True)
class OpChange:
    """One operator of two configs' top lists; a time is None where the operator is not in that list."""

    name: str
    base_ms: float | None
    cand_ms: float | None

    @property
    def change(self) -> str:
        return "new" if self.base_ms is None else "vanished" if self.cand_ms is None else "both"

    @property
    def ratio(self) -> float | None:
        """Candidate self time / base self time (None unless both are there and the base's is above zero)."""
        if self.base_ms is None or self.cand_ms is None or self.base_ms <= 0:
            return None
        return self.cand_ms / self.base_ms

    @property
    def delta_ms(self) -> float:
        return (self.cand_ms or 0.0) - (self.base_ms or 0.0)


def diff_ops(base: list[dict], cand: list[dict]) -> list[OpChange]:
    """What changed from ``base`` to ``cand`` (each a list of ``{name, self_ms}``), the largest change of self
    time first (then by name)."""
    def by_name(ops: list[dict]) -> dict[str, float]:
        out: dict[str, float] = {}
        for op in ops:
            out[op["name"]] = out.get(op["name"], 0.0) + float(op["self_ms"])
        return out

    a, b = by_name(base), by_name(cand)
    changes = [OpChange(name, a.get(name), b.get(name)) for name in {*a, *b}]
    return sorted(changes, key=lambda c: (-abs(c.delta_ms), c.name))


def profiled(rows: list[dict], profiles: dict[str, list[dict]]) -> list[dict]:
    """The result rows of the configs with a profile, in the table's order."""
    return [r for r in rows if profiles.get(r["config_id"])]


def diff_base(rows: list[dict]) -> dict:
    """The config the others are compared with: the reference when it is profiled, else the first."""
    return next((r for r in rows if r.get("is_reference")), rows[0])


NAME_CHARS = 100  # a longer operator name (a templated CUDA kernel's) is cut, whole in its tooltip


def _name(name: str) -> str:
    short = name if len(name) <= NAME_CHARS else name[:NAME_CHARS - 1] + "…"
    return f'<code title="{escape(name, quote=True)}">{escape(short)}</code>'


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def _ratio(change: OpChange) -> str:
    if change.change != "both":
        return change.change
    return "–" if change.ratio is None else f"×{change.ratio:.2f}"


def _top_table(ops: list[dict]) -> str:
    total = sum(op["self_ms"] for op in ops) or 1.0
    rows = "".join(
        f'<tr><td>{op["rank"] + 1}</td><td class="t">{_name(op["name"])}</td>'
        f'<td>{op["self_ms"]:.3f}</td><td>{100 * op["self_ms"] / total:.1f}</td><td>{op["total_ms"]:.3f}</td>'
        f'<td>{op["calls"]}</td><td class="t shapes">{escape(op["shapes"])}</td></tr>' for op in ops)
    return ('<div class="scroll"><table class="ops"><thead><tr><th>#</th><th class="t">operator</th>'
            '<th>self ms</th><th title="share of the self time of these operators">self %</th><th>total ms</th>'
            '<th>calls</th><th class="t">input shapes (costliest)</th></tr></thead>'
            f'<tbody>{rows}</tbody></table></div>')


def _diff_table(changes: list[OpChange]) -> str:
    rows = "".join(
        f'<tr class="{c.change}"><td class="t">{_name(c.name)}</td><td>{_ms(c.base_ms)}</td>'
        f'<td>{_ms(c.cand_ms)}</td><td>{escape(_ratio(c))}</td></tr>' for c in changes)
    return ('<div class="scroll"><table class="ops diff"><thead><tr><th class="t">operator</th><th>base self ms</th>'
            f'<th>self ms</th><th>ratio</th></tr></thead><tbody>{rows}</tbody></table></div>')


def render_profiles_html(rows: list[dict], profiles: dict[str, list[dict]]) -> str:
    """The report's Profiles section (empty when no config was profiled)."""
    rows = profiled(rows, profiles)
    if not rows:
        return ""
    devices = sorted({op["device"] for r in rows for op in profiles[r["config_id"]]})
    parts = ['<h2 id="profiles">Profiles</h2><p class="hint">One more call per config, untimed and never part '
             f"of the latency, traced by the engine's profiler; self time on {escape(', '.join(devices))}, the top "
             f"{max(len(ops) for ops in profiles.values())} operators. The trace opens in "
             '<a href="https://ui.perfetto.dev">Perfetto</a>.</p>']
    for r in rows:
        cid = r["config_id"]
        parts.append(f'<details class="profile"><summary>{escape(str(r["config"]))} · <code>{escape(cid)}</code>'
                     f' · <a href="profiles/{escape(cid)}.json.gz">trace</a></summary>{_top_table(profiles[cid])}'
                     '</details>')
    if len(rows) >= 2:
        base = diff_base(rows)
        parts.append(f'<h3 id="profile-diff">What changed against {escape(str(base["config"]))}</h3>'
                     '<p class="hint">Operator by operator, the largest change of self time first; "new" and '
                     "\"vanished\" are operators in one config's top list and not in the other's.</p>")
        for r in rows:
            if r is not base:
                changes = diff_ops(profiles[base["config_id"]], profiles[r["config_id"]])
                counts = {k: sum(c.change == k for c in changes) for k in ("new", "vanished")}
                total = OpChange("", sum(c.base_ms or 0.0 for c in changes), sum(c.cand_ms or 0.0 for c in changes))
                parts.append(f'<details class="profile-diff"><summary>{escape(str(r["config"]))}: {counts["new"]} new,'
                             f' {counts["vanished"]} vanished; top operators\' self time {_ms(total.base_ms)} → '
                             f'{_ms(total.cand_ms)} ms ({_ratio(total)})</summary>{_diff_table(changes)}</details>')
    return "".join(parts)
