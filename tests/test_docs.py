"""The user documentation in docs/ covers every name the code registers.

The lists are built from the code (the suite and knob models, every backend's and executor's
options model walked recursively, the registries of metrics, schedulers, prompt sources, random
pipelines and executors, the CLI parser, the results tables), never written by hand here: a knob,
metric option, CLI flag or results column added without documentation fails this test.

A name counts as documented when it appears as a word inside code in docs/*.md (an inline
`code span` or a fenced block), which is how the reference writes every key and value.
"""

from __future__ import annotations

import argparse
import re
import types
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = ("README.md", "suite.md", "backends.md", "metrics.md", "run-directory.md", "cli.md", "ci.md", "serving.md")

_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_SPAN = re.compile(r"`([^`\n]+)`")
_TOKEN = re.compile(r"-{0,2}[A-Za-z0-9_][A-Za-z0-9_\-]*")


def code_words(text: str) -> set[str]:
    """Every word written as code in Markdown ``text``: `--executor-opt`, `first_block`, `fid_lo`…"""
    code = [m.group(0) for m in _FENCE.finditer(text)]
    code += _SPAN.findall(_FENCE.sub("", text))
    words: set[str] = set()
    for chunk in code:
        for token in _TOKEN.findall(chunk):
            words.add(token)
            words.add(token.strip("-"))  # `--out` documents the option `out` too
    return words


@pytest.fixture(scope="module")
def documented() -> set[str]:
    missing = [p for p in PAGES if not (DOCS / p).is_file()]
    assert not missing, f"docs/ lacks {', '.join(missing)}"
    return code_words("\n".join((DOCS / p).read_text(encoding="utf-8") for p in PAGES))


def model_names(model: type[BaseModel], seen: set | None = None) -> set[str]:
    """The field names of ``model`` and of every options model nested in its fields, and every
    ``Literal`` value they allow (attention backends, cache methods, compile modes, offload kinds…)."""
    seen = set() if seen is None else seen
    if model in seen:
        return set()
    seen.add(model)
    names: set[str] = set()
    for name, field in model.model_fields.items():
        if field.exclude:  # not a key a user writes (Suite.source_path)
            continue
        names.add(name)
        names |= annotation_names(field.annotation, seen)
    return names


def annotation_names(annotation, seen: set) -> set[str]:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return {str(v) for v in typing.get_args(annotation) if isinstance(v, str)}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return model_names(annotation, seen)
    names: set[str] = set()
    if origin is not None or isinstance(annotation, types.UnionType):
        for arg in typing.get_args(annotation):
            names |= annotation_names(arg, seen)
    return names


def options_of(registry) -> set[str]:
    """The names in a registry of specs with an options model, and every name of those models; entries that
    other tests register (their engine or options live outside the package) are not the product's."""
    def product(spec) -> bool:  # a backend by where its engine lives, anything else by its options model
        return getattr(spec, "engine", spec.options.__module__).startswith("t2ibench.")

    own = [(name, spec) for name, spec in registry.items() if product(spec)]
    return {name for name, _ in own}.union(*(model_names(spec.options) for _, spec in own))


def suite_names() -> dict[str, set[str]]:
    from t2ibench.backends import BACKENDS
    from t2ibench.backends.torch import QUANTIZE_TYPES
    from t2ibench.backends.torch.random_models import RANDOM_PIPELINES
    from t2ibench.backends.torch.schedulers import SCHEDULERS
    from t2ibench.executors import EXECUTORS, ExecutorChoice
    from t2ibench.suites.checks import MEASURES
    from t2ibench.suites.knobs import CommonKnobs
    from t2ibench.suites.prompts import PROMPT_SOURCES, PromptSource
    from t2ibench.suites.schema import Bound, SeedRange, Suite, Timing

    return {
        # `executor:` is written flat ({name: ray, address: auto}): its options are the executors' own, below
        "suite keys": model_names(Suite, seen={ExecutorChoice}) | {"name"} | model_names(PromptSource)
        | model_names(SeedRange) | model_names(Timing) | model_names(Bound),
        "knobs and their options": model_names(CommonKnobs) | options_of(BACKENDS) - set(BACKENDS.names()),
        "backends and their options": options_of(BACKENDS),
        "quantize types": {t for types_ in QUANTIZE_TYPES.values() for t in types_},
        "schedulers": set(SCHEDULERS.names()),
        "executors and their options": options_of(EXECUTORS),
        "prompt sources": {n.lstrip(".") for n in PROMPT_SOURCES.names()},
        "random pipelines": set(RANDOM_PIPELINES.names()),
        "objective/constraint/gate columns": set(MEASURES),
    }


def metric_names() -> dict[str, set[str]]:
    from t2ibench.metrics.registry import METRICS, columns

    names = {"metrics": set(METRICS.names()) | {a for _, s in METRICS.items() for a in s.cli_aliases},
             "metric columns": set(columns())}
    for name, spec in METRICS.items():
        names[f"options of metric {name}"] = model_names(spec.options)
    return names


def cli_names() -> dict[str, set[str]]:
    """Every verb and sub-verb of ``t2ibench`` and every long option of each."""
    from t2ibench.cli import _parser

    names: dict[str, set[str]] = {}

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        options = {s for a in parser._actions for s in a.option_strings if s.startswith("--") and s != "--help"}
        names[f"options of `{path}`"] = options
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                names.setdefault(f"verbs of `{path}`", set()).update(action.choices)
                for verb, sub in action.choices.items():
                    if f"{path} {verb}" not in names and sub not in seen:
                        seen.add(sub)
                        walk(sub, f"{path} {verb}")

    seen: set = set()
    walk(_parser(), "t2ibench")
    return names


def column_names() -> dict[str, set[str]]:
    """Every column of results.csv (the metric columns with their CI bounds) and of cells.csv."""
    from t2ibench.metrics.registry import columns
    from t2ibench.reports.tables import CELL_CSV_COLUMNS, RESULT_EXTRAS, RESULT_FIGURES
    from t2ibench.store.runstore import CELL_COLUMNS
    from t2ibench.suites.knobs import KNOB_NAMES

    metric_cols = {f"{c}{suffix}" for c in columns() for suffix in ("", "_lo", "_hi")}
    return {
        "results.csv columns": {"config_id", "config", *KNOB_NAMES, *RESULT_FIGURES, *metric_cols, "pareto",
                                *RESULT_EXTRAS},
        "cells.csv columns": {*CELL_CSV_COLUMNS, *CELL_COLUMNS},
    }


def plugin_names() -> dict[str, set[str]]:
    """The pytest plugin's command-line options and fixtures."""
    from t2ibench import pytest_plugin

    class Group:
        def __init__(self) -> None:
            self.options: set[str] = set()

        def addoption(self, *names: str, **_: object) -> None:
            self.options.update(names)

    group = Group()
    pytest_plugin.pytest_addoption(types.SimpleNamespace(getgroup=lambda *_: group))
    fixtures = {n for n in vars(pytest_plugin) if n.startswith("t2ibench_") and callable(getattr(pytest_plugin, n))}
    return {"pytest plugin options": group.options, "pytest plugin fixtures": fixtures}


def report_names() -> dict[str, set[str]]:
    from t2ibench.reports import FORMATS

    return {"report formats": set(FORMATS)}


@pytest.mark.parametrize("kind", [suite_names, metric_names, cli_names, column_names, plugin_names, report_names],
                         ids=lambda f: f.__name__)
def test_every_registered_name_is_documented(kind, documented):
    missing = {group: sorted(names - documented) for group, names in kind().items()}
    missing = {group: names for group, names in missing.items() if names}
    assert not missing, "not documented in docs/ (write each as `code`):\n" + "\n".join(
        f"  {group}: {', '.join(names)}" for group, names in missing.items())


def test_the_lists_are_not_empty():
    """The lists come from the code: a walker that found nothing would make the coverage test vacuous."""
    names = {**suite_names(), **metric_names(), **column_names()}
    knobs = names["knobs and their options"]
    assert {"steps", "quantize", "cache", "lora", "threshold", "cache_interval", "first_block", "flash_attn",
            "max-autotune", "blocks_per_group", "float8_e4m3fn"} <= knobs
    assert {"fid", "kid", "cmmd", "clip_score", "lpips"} <= names["metrics"]
    assert {"against", "features", "subset_size"} <= names["options of metric kid"]
    results = names["results.csv columns"]
    assert {"latency_ms_p50", "fid_lo", "lpips_diversity_hi", "cache_hit_rate", "applied"} <= results
    executors = names["executors and their options"]
    assert {"address", "max_actors", "cpus_per_actor", "share_gpus", "ray", "local"} <= executors
    cli = cli_names()
    assert {"run", "report", "validate", "suites", "doctor", "score", "compare", "export"} <= cli["verbs of `t2ibench`"]
    assert "--executor-opt" in cli["options of `t2ibench run`"]
    plugin = plugin_names()
    assert {"--t2ibench-baselines", "--t2ibench-update-baseline"} <= plugin["pytest plugin options"]
    assert {"t2ibench_regression", "t2ibench_benchmark"} <= plugin["pytest plugin fixtures"]


def test_code_words_reads_spans_and_fences_only():
    text = "prose steps here\n`--out DIR` and `{method: first_block}`\n```yaml\nmatrix: {scheduler: [euler]}\n```\n"
    words = code_words(text)
    assert {"--out", "out", "DIR", "method", "first_block", "matrix", "scheduler", "euler"} <= words
    assert "prose" not in words and "steps" not in words


def slugs(markdown: str) -> set[str]:
    """GitHub's anchors of the headings of a page: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+\s+(.*?)\s*$", _FENCE.sub("", markdown), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_slugs_follow_github():
    assert slugs("## What each number estimates, and its interval\n### `model`\n## manifest.json\n") == {
        "what-each-number-estimates-and-its-interval", "model", "manifestjson"}


def test_links_between_pages_resolve():
    """Every relative link in docs/ and the README points to a file that exists, and to a heading in it."""
    broken = []
    for page in [ROOT / "README.md", *(DOCS / p for p in PAGES)]:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = page.parent / path if path else page
            if not file.exists():
                broken.append(f"{page.relative_to(ROOT)} → {target}")
            elif anchor and file.suffix == ".md" and anchor not in slugs(file.read_text(encoding="utf-8")):
                broken.append(f"{page.relative_to(ROOT)} → {target} (no such heading)")
    assert not broken, "broken links: " + "; ".join(broken)


def test_readme_points_to_docs_not_to_the_design_folder():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "ARCHITECTURE.md" not in readme
    for page in PAGES:
        assert f"docs/{page}" in readme or page == "README.md", f"README does not link docs/{page}"
    assert "](docs/README.md)" in readme
