"""Fuzzed suites: whatever a suite file holds, ``t2ibench validate FILE`` exits 0 or 2, never a traceback.

Inputs: mutations of valid suites (the builtin ones and conftest's ``suite_dict``: keys dropped,
replaced, added, duplicated, values of the wrong type, huge or non-finite numbers, unicode, very
long strings, deep nesting, YAML tags and aliases), random YAML values, random text and bytes.
Each case runs ``t2ibench.cli.main(["validate", path])`` in-process under a 10 s alarm. Exit 2
must print only ``t2ibench: error: FILE:LINE: ...`` lines with a line inside the file; exit 0
must give a suite whose manifest data is plain JSON (no NaN, no lone surrogate).

The default run uses a derandomized profile (the same 370 examples each run, ~15 s); the
``slow`` test draws 2,000 fresh ones (``-m slow`` or ``T2IBENCH_FUZZ_SLOW=1``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from t2ibench.cli import main  # noqa: E402
from t2ibench.suites import builtin_suites, load_suite  # noqa: E402
from t2ibench.suites.knobs import KNOB_NAMES  # noqa: E402
from tests.conftest import suite_dict  # noqa: E402

_COMMON = dict(deadline=timedelta(seconds=10), database=None, print_blob=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                      HealthCheck.data_too_large, HealthCheck.filter_too_much])
settings.register_profile("suite-fuzz", derandomize=True, **_COMMON)
settings.register_profile("suite-fuzz-slow", derandomize=False, **_COMMON)
FUZZ = settings.get_profile("suite-fuzz")
SLOW = settings.get_profile("suite-fuzz-slow")

PROMPT_FILES = {  # written next to every fuzzed suite, so `prompts: {source: ...}` reaches the readers
    "prompts.txt": "a cat\n# comment\n\na dog\n",
    "prompts.csv": "prompt,category\na cat,Animals\n\"a, dog\",Animals\na car,Vehicles\n",
    "prompts.tsv": "Prompt\tCategory\na cat\tAnimals\n",
    "prompts.jsonl": '{"prompt": "a cat", "category": "Animals"}\n{"prompt": "a dog"}\n',
    "bad.jsonl": '{"prompt": 5}\nnot json\n',
    "binary.txt": b"\xff\xfe\x00garbage",
    "empty.csv": "",
}


# --- the check ---------------------------------------------------------------------------

class _Hang(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float):
    def fire(signum, frame):
        raise _Hang(f"validate ran longer than {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _write_prompt_files(folder: Path) -> None:
    for name, content in PROMPT_FILES.items():
        path = folder / name
        if not path.exists():
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
    stats = folder / "coco2014-val-5k.npz"  # the FID statistics the sdxl-mlperf base points at
    if not stats.exists():
        stats.write_bytes(b"PK")  # validate checks that it exists; reading it is FID's


def validate(folder: Path, content: bytes, files: dict[str, bytes] | None = None) -> int:
    """Run ``validate`` on ``content`` (with ``files`` beside it) and check the exit code and output."""
    _write_prompt_files(folder)
    for name, data in (files or {}).items():
        (folder / name).write_bytes(data)
    path = folder / "suite.yaml"
    path.write_bytes(content)
    out, err = io.StringIO(), io.StringIO()
    with _time_limit(10), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["validate", str(path)])
    shown = out.getvalue() + err.getvalue()
    if currently_in_test_context():
        event(f"exit {rc}")
    assert rc in (0, 2), shown
    assert "Traceback" not in shown
    if rc == 2:
        text = content.decode("utf-8-sig", errors="replace")
        n_lines = len(re.findall(r"\r\n|[\r\n\x85\u2028\u2029]", text)) + 1  # lines as YAML counts them
        lines = err.getvalue().splitlines()
        assert lines, "exit 2 without a message"
        for line in lines:
            assert line.startswith("t2ibench: error: "), line
            if line.startswith(f"t2ibench: error: cannot read suite {path}: "):
                continue
            m = re.match(rf"t2ibench: error: {re.escape(str(path))}:(\d+): .", line)
            assert m, f"not a FILE:LINE: message: {line!r}"
            assert 1 <= int(m.group(1)) <= n_lines, line
    else:
        assert out.getvalue().startswith(f"{path}: ok ("), shown
        suite = load_suite(path)
        manifest = json.dumps(suite.resolved(), allow_nan=False, ensure_ascii=False)
        manifest.encode("utf-8")  # a valid suite can be written to manifest.json
        ids = [c.config_id for c in suite.configs()]
        assert len(ids) == len(set(ids)) and ids
        assert suite.prompt_list() and suite.seed_list()
    return rc


# --- strategies --------------------------------------------------------------------------

SUITE_KEYS = ["name", "description", "model", "prompts", "seeds", "defaults", "matrix", "exclude", "include",
              "reference", "metrics", "timing", "objectives", "constraints", "gates", "trust_remote_code",
              "source_path"]
NESTED_KEYS = ["source", "sample", "categories", "column", "seed", "count", "start", "warmup", "repeats",
               "min", "max", "against", "features", "resize", "weights", "subsets", "subset_size", "degree",
               "net", "pretrained", "mode", "fullgraph", "name"]
COLUMNS = ["latency_ms_p50", "latency_ms_p95", "peak_vram_mb", "n_ok", "fid", "kid", "cmmd", "clip_score",
           "lpips", "lpips_diversity", "images_per_s"]
WORDS = ["euler", "ddim", "lcm", "eulr", "fp16", "bf16", "fp64", "sdpa", "flash", "xformers", "none", "model",
         "sequential", "tiny", "default", "reference", "parti", "random:tiny-sd", "random:inception",
         "random:ViT-B-32", "random:alex", "max-autotune", "bilinear", "clean", "min", "max", "5%", "-5%",
         "5 %", "Animals", "prompt", "category", "prompts.txt", "prompts.csv", "prompts.tsv", "prompts.jsonl",
         "bad.jsonl", "binary.txt", "empty.csv", "missing.txt", "../../etc/passwd", "/", ".", "~", "~nobody/x.txt",
         "x.npz", "stats.npz", "a/b", "", " ", "a cat", "{}", "[]", "null", "true", "<script>", "a|b",
         "$\\frac$", "\u00e9\u00e8", "\U0001F600", "\u202e", "\u0000", "\t", "\ufeff", "CON", "x" * 300 + ".txt"]
HUGE = [1e308, -1e308, 1.7976931348623157e308, 5e-324, 2**70, -2**70, 2**63, 2**63 - 1, 2**64, -1, 0,
        -0.0, 10**400, float("nan"), float("inf"), float("-inf"), 7, 8, 64, 1000, 1001, 8192, 8200, 100_000]
LONG = ["a" * 10_000, "\u00e9" * 5_000, "\U0001F600" * 2_000, "x" * 300 + ".txt", "a/" * 2_000 + "p.txt",
        " ".join(["euler"] * 2_000), "\n".join(["line"] * 500)]

KEYS = st.one_of(st.sampled_from(SUITE_KEYS + NESTED_KEYS + list(KNOB_NAMES) + COLUMNS), st.text(max_size=12),
                 st.integers(-5, 5), st.sampled_from(LONG[:2]))
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from(HUGE),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20), st.sampled_from(WORDS),
    st.sampled_from(LONG), st.sampled_from(list(KNOB_NAMES) + COLUMNS),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=10,
)

# Raw YAML spliced in where the mapping has a placeholder: what yaml.safe_dump never writes.
FRAGMENTS = [
    "!!python/object/apply:os.system ['echo pwned > pwned.txt']",
    "!!python/name:os.system", "!!python/tuple [1, 2]", "!!set {a, b}", "!!omap [{a: 1}]", "!!pairs [[a, 1]]",
    "!!binary /w==", "!!binary aGVsbG8=", "!!timestamp 2001-12-14", "2001-12-14", "2001-12-14t21:59:43.10-05:00",
    ".nan", ".inf", "-.inf", "0x1F", "0o17", "0b101", "1_000", "1e308", "1e309", "-1e309", "!!float 1e999",
    "!!int '12'", "!!int x", "!!str 5", "!!bool maybe", "!custom thing", "~", "yes", "no", "on", "off", "=",
    "'\\x00'", '"\\0"', '"\\ud800"', '"\\udfff x"', '"\\U0001F600"', '"\\x41\\u00e9"', "*undefined",
    "&r [1, *r]", "&m {a: *m}", "{a: 1, a: 2}", "{? [a, b] : 1}", "{? {a: 1} : 2}", "[a, b", "{a: 1",
    "'unterminated", "|\n  block\n  text", ">\n  folded", "- a\n- b", "[" * 40 + "]" * 40,
    "[" * 400 + "]" * 400, "{a: " * 200 + "1" + "}" * 200, "%TAG ! tag:x,2000:", "--- a", "... ",
    "\t", "@at", "`tick", "{<<: {steps: 4}}", "{<<: 5}", "{<<: [{a: 1}, {b: 2}]}",
]
PLACEHOLDER = "zzfragmentzz"


def _offline_ready(data: dict) -> dict:
    """A builtin suite that validates offline: its hub LoRAs (an error offline when not in the cache) become
    random adapters; the files it points at are written beside it (``validate`` checks that they exist)."""
    for entry in data.get("include") or []:
        for adapter in entry.get("lora") or []:
            adapter["source"] = "random:" + adapter["source"].replace("/", "-")
    return data


def _base_suites() -> list[dict]:
    bases = [_offline_ready(yaml.safe_load(path.read_text())) for path in builtin_suites().values()]
    bases.append(suite_dict())
    bases.append(suite_dict(matrix={"scheduler": ["euler", "ddim"], "steps": [2, 4]},
                            include=[{"name": "big", "width": 128, "height": 128}],
                            exclude=[{"scheduler": "ddim", "steps": 4}], reference={"steps": 8},
                            metrics={"fid": {"features": "random:inception"}, "lpips": {"net": "random:alex"}},
                            objectives={"latency_ms_p50": "min", "fid": "min"},
                            constraints={"peak_rss_mb": {"max": 9000}}, gates={"latency_ms_p50": "5%"}))
    bases.append(suite_dict(prompts={"source": "prompts.csv", "categories": ["Animals"], "sample": 1},
                            seeds={"count": 3, "start": 5}))
    bases.append(suite_dict(prompts={"source": "prompts.jsonl"}, defaults={"compile": {"mode": "default"}}))
    return bases


BASES = _base_suites()


def _paths(obj: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, path + (i,))
    return out


def _get(obj: Any, path: tuple) -> Any:
    for part in path:
        obj = obj[part]
    return obj


@st.composite
def mutated_suites(draw) -> bytes:
    """A valid suite with 1-3 structural mutations, dumped, then 0-2 textual mutations."""
    data = json.loads(json.dumps(draw(st.sampled_from(BASES))))  # a deep copy
    fragments: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(data)))
        op = draw(st.sampled_from(["drop", "replace", "replace", "add", "retype", "fragment"]))
        target = _get(data, path)
        parent = _get(data, path[:-1]) if path else None
        if op == "drop" and path:
            del parent[path[-1]]
        elif op == "replace" and path:
            parent[path[-1]] = draw(VALUES)
        elif op == "add" and isinstance(target, dict):
            target[draw(KEYS)] = draw(VALUES)
        elif op == "add" and isinstance(target, list):
            target.append(draw(VALUES))
        elif op == "retype" and path:
            how = draw(st.sampled_from(["list", "str", "dict", "none", "number"]))
            parent[path[-1]] = {"list": [target], "str": str(target), "dict": {"value": target},
                                "none": None, "number": draw(st.sampled_from(HUGE))}[how]
        elif op == "fragment" and path:
            parent[path[-1]] = f"{PLACEHOLDER}{len(fragments)}"
            fragments.append(draw(st.sampled_from(FRAGMENTS)))
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=draw(st.booleans()),
                          default_flow_style=draw(st.sampled_from([False, None, True])), width=10**6)
    for i, fragment in reversed(list(enumerate(fragments))):
        if "\n" in fragment:  # a block value goes inline only as flow; keep it on its own lines
            fragment = "\n" + "\n".join("      " + line for line in fragment.splitlines())
        text = text.replace(f"{PLACEHOLDER}{i}", fragment)
    lines = text.splitlines(keepends=True)
    for _ in range(draw(st.integers(0, 2))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["duplicate", "delete", "truncate", "insert", "indent"]))
        if op == "duplicate":  # a duplicate key, or a repeated list item
            lines.insert(i, lines[i])
        elif op == "delete":
            del lines[i]
        elif op == "truncate":
            lines[i] = lines[i][: draw(st.integers(0, max(0, len(lines[i]) - 1)))]
        elif op == "insert":
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + draw(st.text(max_size=6)) + lines[i][at:]
        elif op == "indent":
            lines[i] = draw(st.sampled_from([" ", "  ", "\t", ""])) + lines[i].lstrip()
    text = "".join(lines)
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1"]))
    return text.encode(encoding, errors="replace")


def _dump_any(value: Any) -> str:
    return yaml.safe_dump(value, allow_unicode=True, width=10**6)


RANDOM_YAML = VALUES.map(_dump_any).map(lambda t: t.encode("utf-8"))
RANDOM_TEXT = st.text(max_size=300).map(lambda t: t.encode("utf-8", errors="surrogatepass"))
RANDOM_BYTES = st.one_of(st.binary(max_size=300), st.sampled_from([b"", b"\n", b"\xef\xbb\xbf", b"---\n",
                                                                   b"--- a\n--- b\n", b"\x00" * 10, b"~\n"]))
PROMPT_SNIPPETS = [
    "prompt\n", "Prompt\tCategory\n", "prompt,category\n", '{"prompt": "a"}\n', '{"prompt": 5}\n', "[1]\n",
    '{"prompt": "\\ud800"}\n', '{"prompt": "a", "category": NaN}\n', "{" * 3000 + "\n", "[" * 3000 + "\n",
    '"unterminated\n', 'a,"b""c"\n', "a" * 140_000 + "\n", "\x00\n", "\r\n", "\ufeff", "#\n", "\u2028",
    "col\n", "a,b,c,d\n", "\t\t\n",
]


@st.composite
def prompt_files(draw) -> tuple[bytes, dict[str, bytes]]:
    """A good suite whose prompts come from a fuzzed .txt/.csv/.tsv/.jsonl file."""
    suffix = draw(st.sampled_from([".txt", ".csv", ".tsv", ".jsonl"]))
    parts = draw(st.lists(st.one_of(st.sampled_from(PROMPT_SNIPPETS), st.text(max_size=40)), max_size=6))
    data = "".join(parts).encode("utf-8", errors="surrogatepass")
    if draw(st.booleans()):
        data = draw(st.binary(max_size=200))
    source: dict[str, Any] = {"source": f"fuzzed{suffix}"}
    for key, values in (("column", ["prompt", "Prompt", "caption", "col"]), ("categories", [["Animals"], ["a"]]),
                        ("sample", [1, 2, 10**6]), ("seed", [0, 2**70])):
        if draw(st.booleans()):
            source[key] = draw(st.sampled_from(values))
    suite = yaml.safe_dump(suite_dict(prompts=source)).encode()
    return suite, {f"fuzzed{suffix}": data}


EVERYTHING = st.one_of(mutated_suites(), mutated_suites(), RANDOM_YAML, RANDOM_TEXT, RANDOM_BYTES)


# --- tests -------------------------------------------------------------------------------

@pytest.mark.parametrize("index", range(len(BASES)))
def test_every_base_suite_is_valid(tmp_path, index):
    """Mutations start from valid suites; otherwise the fuzz would only ever see the first error."""
    content = yaml.safe_dump(BASES[index], sort_keys=False, allow_unicode=True).encode()
    assert validate(tmp_path, content) == 0


@settings(FUZZ, max_examples=250)
@given(content=mutated_suites())
def test_mutated_suites(tmp_path, content):
    validate(tmp_path, content)


@settings(FUZZ, max_examples=60)
@given(content=st.one_of(RANDOM_YAML, RANDOM_TEXT, RANDOM_BYTES))
def test_random_files(tmp_path, content):
    validate(tmp_path, content)


@settings(FUZZ, max_examples=60)
@given(case=prompt_files())
def test_fuzzed_prompt_files(tmp_path, case):
    validate(tmp_path, *case)


@pytest.fixture
def asked_for_slow(request):
    """The 2,000-example fuzz runs when asked for: ``-m slow`` (or any -m naming slow) or T2IBENCH_FUZZ_SLOW=1."""
    if "slow" not in (request.config.getoption("markexpr") or "") and not os.environ.get("T2IBENCH_FUZZ_SLOW"):
        pytest.skip("2,000 fresh examples (~1 min): run with -m slow or T2IBENCH_FUZZ_SLOW=1")


@pytest.mark.slow
@settings(SLOW, max_examples=2000)
@given(content=EVERYTHING, prompts=st.one_of(st.none(), prompt_files()))
def test_fuzz_slow(tmp_path, asked_for_slow, content, prompts):
    validate(tmp_path, *(prompts or (content,)))


# --- the crashes the fuzz found, one each ---------------------------------------------------

HEAD = "name: t\nmodel: random:tiny-sd\nprompts: [a cat]\n"
FOUND = {  # case → (suite text, the error expected, as "LINE: message fragment")
    "infinite guidance": (HEAD + "defaults: {guidance_scale: .inf}\n", "4: defaults.guidance_scale: input should "
                                                                       "be a finite number (got inf)"),
    "NaN bound": (HEAD + "constraints: {n_ok: {min: .nan}}\n", "4: constraints.n_ok.min: input should be a finite"),
    "NaN gate": (HEAD + "gates: {n_ok: .nan}\n", "4: gates.n_ok: input should be a finite number"),
    "seed past int64": (HEAD + "seeds: [1180591620717411303424]\n", "4: seeds[0]: input should be less than or "
                                                                    "equal to 9223372036854775807"),
    "seed range past int64": (HEAD + "seeds: {count: 3, start: 9223372036854775807}\n",
                              "4: seeds: the last seed, start + count - 1, must be at most"),
    "unknown home": ("name: t\nmodel: random:tiny-sd\nprompts: {source: '~nosuchuser_t2i/a.txt'}\n",
                     "3: prompts.source: cannot expand '~nosuchuser_t2i/a.txt'"),
    "name too long": ("name: t\nmodel: random:tiny-sd\nprompts: {source: " + "a" * 300 + ".txt}\n",
                      "3: prompts.source: cannot access prompt file"),
    "deep nesting": (HEAD + "defaults: " + "[" * 1000 + "]" * 1000 + "\n", "1: nested too deeply"),
    "deep mapping": (HEAD + "defaults: " + "{a: " * 40 + "1" + "}" * 40 + "\n", "4: nested more than 32 levels"),
    "recursive alias": (HEAD + "defaults: &a {x: *a}\n", "4: an alias refers to a value that contains it"),
    "billion laughs": ("".join(f"{k}: &{k} [{', '.join([f'*{p}'] * 10) if p else ', '.join('x' * 10)}]\n"
                               for p, k in zip([None, *"abcdef"], "abcdefg")) + HEAD + "description: *g\n",
                       "the suite holds more than 100000 values"),
    "set of prompts": ("name: t\nmodel: random:tiny-sd\nprompts: !!set {a, b}\n",
                       "3: prompts: YAML tag !!set is not supported in a suite; use a plain list"),
    "binary prompt": ("name: t\nmodel: random:tiny-sd\nprompts: [!!binary aGVsbG8=]\n",
                      "3: prompts[0]: YAML tag !!binary is not supported in a suite; use plain text"),
    "lone surrogate": ('name: t\nmodel: random:tiny-sd\nprompts: ["\\ud800 cat"]\n',
                       "3: prompts[0]: the escape \\ud800 is half of a UTF-16 pair"),
    "non-string key": (HEAD + "defaults: {2024-01-01: 3}\n",
                       "4: defaults: key datetime.date(2024, 1, 1) is not a string; quote it"),
    "control character": (HEAD + "description: a\x1fb\n", "4: YAML error: character #x001f is not allowed"),
    "line break in a key": (HEAD + '"a\\nb\\u202e": 1\n', "4: a\\nb\\u202e: unknown key 'a\\nb\\u202e'"),
    "bad !!int": (HEAD + "defaults: {steps: !!int x}\n", "4: defaults.steps: invalid integer 'x'; quote it"),
    "bad implicit int": (HEAD + "defaults: {steps: 0x_}\n", "4: defaults.steps: invalid integer '0x_'"),
    "impossible date": (HEAD + "description: 2001-13-45\n", "4: description: invalid date '2001-13-45'"),
}


@pytest.mark.parametrize("case", FOUND)
def test_found_crashes_are_file_line_errors(tmp_path, capsys, case):
    text, expected = FOUND[case]
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    with _time_limit(10):
        assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"t2ibench: error: {path}:" in err
    assert expected in err, err
    assert "Traceback" not in err


FOUND_IN_PROMPT_FILES = {  # case → (prompt file, its content, the error expected)
    "csv field over the csv limit": ("p.csv", "prompt\n" + "a" * 140_000 + "\n",
                                     "p.csv:2: cannot read as csv: field larger than field limit"),
    "tsv field over the csv limit": ("p.tsv", "Prompt\n" + "a" * 140_000 + "\n", "p.tsv:2: cannot read as tsv"),
    "header over the csv limit": ("p.csv", "a" * 140_000 + "\nx\n", "p.csv:1: cannot read as csv"),
    "deeply nested JSON line": ("p.jsonl", '{"prompt": "a"}\n' + "[" * 100_000 + "\n", "p.jsonl:2: JSON nested too deeply"),
    "lone surrogate in JSON": ("p.jsonl", '{"prompt": "a"}\n{"prompt": "b\\ud800"}\n',
                               "p.jsonl: prompt 2 holds the escape \\ud800, half of a UTF-16 pair"),
}


@pytest.mark.parametrize("case", FOUND_IN_PROMPT_FILES)
def test_found_prompt_file_crashes_are_errors(tmp_path, capsys, case):
    name, content, expected = FOUND_IN_PROMPT_FILES[case]
    (tmp_path / name).write_text(content)
    path = tmp_path / "suite.yaml"
    path.write_text(f"name: t\nmodel: random:tiny-sd\nprompts: {{source: {name}}}\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"t2ibench: error: {path}:3: prompts.source: ") and expected in err, err
    assert len(err.splitlines()) == 1
