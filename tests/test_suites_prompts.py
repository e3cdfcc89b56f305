"""Prompt sources: inline, .txt, .csv, .tsv, .jsonl, parti; filtering and stratified sampling."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from t2ibench.suites import PromptSource, Suite, SuiteError, load_suite
from t2ibench.suites.prompts import allocate, prompt_id, resolve_prompts, stratified_sample


def suite_with(prompts, tmp_path: Path | None = None) -> Suite:
    data = dict(name="t", model="m", prompts=prompts)
    if tmp_path is not None:
        data["source_path"] = tmp_path / "suite.yaml"
    return Suite(**data)


def texts(suite: Suite) -> list[str]:
    return [p.text for p in suite.prompt_list()]


def test_inline_list_ids_are_content_hashes():
    suite = suite_with(["a cat", "a dog", "a cat"])
    prompts = suite.prompt_list()
    assert [p.text for p in prompts] == ["a cat", "a dog", "a cat"]
    assert prompts[0].prompt_id == prompt_id("a cat") and len(prompts[0].prompt_id) == 11
    assert prompts[2].prompt_id == prompts[0].prompt_id + "-2"
    # ids do not depend on the position, so reordering or adding prompts keeps them
    assert suite_with(["a dog", "new", "a cat"]).prompt_list()[2].prompt_id == prompts[0].prompt_id


def test_txt_skips_blank_and_comments(tmp_path):
    (tmp_path / "p.txt").write_text("# header\na cat\n\n  a dog  \n#x\n", encoding="utf-8")
    assert texts(suite_with({"source": "p.txt"}, tmp_path)) == ["a cat", "a dog"]


def test_csv_columns_and_categories(tmp_path):
    (tmp_path / "p.csv").write_text('Prompt,Category\n"a cat, sitting",Animals\na car,Vehicles\n,Empty\n')
    prompts = suite_with({"source": "p.csv"}, tmp_path).prompt_list()
    assert [(p.text, p.category) for p in prompts] == [("a cat, sitting", "Animals"), ("a car", "Vehicles")]
    (tmp_path / "q.csv").write_text("id,caption\n1,a boat\n")
    assert texts(suite_with({"source": "q.csv", "column": "caption"}, tmp_path)) == ["a boat"]


def test_csv_missing_column_errors(tmp_path):
    (tmp_path / "q.csv").write_text("id,caption\n1,a boat\n")
    with pytest.raises(SuiteError, match=r"prompts.source: no 'prompt' column in .*q.csv; columns: id, caption"):
        suite_with({"source": "q.csv"}, tmp_path)
    with pytest.raises(SuiteError, match=r"prompts.column: no column 'captoin' .*\(did you mean 'caption'\?\)"):
        suite_with({"source": "q.csv", "column": "captoin"}, tmp_path)


def test_tsv_keeps_quotes(tmp_path):
    (tmp_path / "p.tsv").write_text('prompt\tcategory\n"HELLO" on a wall\tText\n')
    prompts = suite_with({"source": "p.tsv"}, tmp_path).prompt_list()
    assert [(p.text, p.category) for p in prompts] == [('"HELLO" on a wall', "Text")]


def test_jsonl(tmp_path):
    lines = [{"prompt": "a cat", "category": "A"}, {"prompt": "a dog"}]
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    prompts = suite_with({"source": "p.jsonl"}, tmp_path).prompt_list()
    assert [(p.text, p.category) for p in prompts] == [("a cat", "A"), ("a dog", None)]
    (tmp_path / "bad.jsonl").write_text('{"prompt": "x"}\n{oops\n')
    with pytest.raises(SuiteError, match=r"bad.jsonl:2: invalid JSON"):
        suite_with({"source": "bad.jsonl"}, tmp_path)


def test_relative_paths_resolve_against_suite_folder(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "p.txt").write_text("a cat\n")
    (tmp_path / "sub" / "s.yaml").write_text("name: s\nmodel: m\nprompts: {source: p.txt}\n")
    monkeypatch.chdir(tmp_path)
    assert texts(load_suite("sub/s.yaml")) == ["a cat"]


def test_empty_sources_error(tmp_path):
    (tmp_path / "p.txt").write_text("# nothing\n")
    with pytest.raises(SuiteError, match=r"prompts.source: no prompts in p.txt"):
        suite_with({"source": "p.txt"}, tmp_path)
    with pytest.raises(SuiteError, match=r"prompts: no prompts"):
        suite_with([])
    with pytest.raises(SuiteError, match=r"unsupported prompt file type '.parquet'"):
        suite_with({"source": "p.parquet"}, tmp_path)


def test_parti_full():
    prompts = suite_with({"source": "parti"}).prompt_list()
    assert len(prompts) == 1632
    assert len(Counter(p.category for p in prompts)) == 12
    assert len({p.prompt_id for p in prompts}) == 1632
    # quotes are part of the text (the file has no CSV quoting)
    assert any(p.text.startswith('"G I G G L E"') for p in prompts)


def test_parti_categories_filter():
    prompts = suite_with({"source": "parti", "categories": ["Vehicles", "Abstract"]}).prompt_list()
    counts = Counter(p.category for p in prompts)
    assert counts == {"Vehicles": 104, "Abstract": 51}


def test_stratified_sample_is_proportional_and_deterministic():
    spec = {"source": "parti", "sample": 64}
    prompts = suite_with(spec).prompt_list()
    assert len(prompts) == 64 and len({p.prompt_id for p in prompts}) == 64
    counts = Counter(p.category for p in prompts)
    full = Counter(p.category for p in suite_with({"source": "parti"}).prompt_list())
    assert set(counts) == set(full)  # every category represented
    for category, n in counts.items():
        assert abs(n - 64 * full[category] / 1632) < 1.0 + 1e-9, category
    assert counts["Animals"] == 12 and counts["Abstract"] == 2
    # deterministic, and a different seed picks a different sample of the same shape
    assert suite_with(spec).prompt_list() == prompts
    other = suite_with({**spec, "seed": 1}).prompt_list()
    assert Counter(p.category for p in other) == counts and other != prompts


def test_stratified_sample_stable_across_processes():
    code = ("from t2ibench.suites import Suite; "
            "s = Suite(name='t', model='m', prompts={'source': 'parti', 'sample': 20, 'seed': 7}); "
            "print(','.join(p.prompt_id for p in s.prompt_list()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "99", "PATH": ""},
                         cwd=Path(__file__).resolve().parents[1]).stdout.strip()
    here = suite_with({"source": "parti", "sample": 20, "seed": 7}).prompt_list()
    assert out == ",".join(p.prompt_id for p in here)


def test_sample_with_categories_and_too_many():
    prompts = suite_with({"source": "parti", "categories": ["Abstract"], "sample": 10}).prompt_list()
    assert len(prompts) == 10 and {p.category for p in prompts} == {"Abstract"}
    with pytest.raises(SuiteError, match=r"prompts.sample: sample 60 is more than the 51 prompts available"):
        suite_with({"source": "parti", "categories": ["Abstract"], "sample": 60})


def test_sample_all_returns_everything_in_file_order(tmp_path):
    (tmp_path / "p.txt").write_text("c\nb\na\n")
    assert texts(suite_with({"source": "p.txt", "sample": 3}, tmp_path)) == ["c", "b", "a"]


def test_categories_on_file_without_categories(tmp_path):
    (tmp_path / "p.txt").write_text("a\n")
    with pytest.raises(SuiteError, match=r"prompts.categories: p.txt has no category column"):
        suite_with({"source": "p.txt", "categories": ["A"]}, tmp_path)


def test_allocate_largest_remainder_and_minimum_one():
    assert allocate({"a": 5, "b": 3, "c": 2}, 5) == {"a": 3, "b": 1, "c": 1}
    assert allocate({"a": 98, "b": 1, "c": 1}, 3) == {"a": 1, "b": 1, "c": 1}
    assert allocate({"a": 98, "b": 1, "c": 1}, 2) == {"a": 2, "b": 0, "c": 0}
    assert sum(allocate({"a": 7, "b": 7, "c": 7}, 10).values()) == 10


def test_stratified_sample_helper_keeps_order():
    rows = [(f"t{i}", "A" if i % 3 else "B") for i in range(30)]
    picked = stratified_sample(rows, 9, seed=0)
    assert len(picked) == 9 and picked == sorted(picked, key=rows.index)
    assert Counter(c for _, c in picked) == {"A": 6, "B": 3}


def test_resolve_prompts_accepts_model():
    assert len(resolve_prompts(PromptSource(source="parti", sample=5))) == 5
