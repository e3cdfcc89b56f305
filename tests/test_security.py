"""Security rules, one test (or more) each.

1. Suites are read with ``yaml.safe_load`` only: a ``!!python/...`` tag is an error and never runs.
2. A model's own code runs only when the suite says ``trust_remote_code: true``.
3. Weights are read with ``torch.load(weights_only=True)`` (or safetensors): a malicious pickle is refused.
4. Config and suite names never become paths outside the run directory.
5. Every user string is escaped in report.html; report.md keeps its table intact.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from html_page import ParsedPage
import torch
import yaml

import t2ibench
from t2ibench.cli import main
from t2ibench.errors import UserError
from tests.conftest import suite_dict

PACKAGE = Path(t2ibench.__file__).parent


def _calls(func_filter) -> list[tuple[str, int, ast.Call]]:
    """Every call in the package's source for which ``func_filter(dotted name)`` is true."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                if func_filter(name):
                    found.append((f"{path.relative_to(PACKAGE.parent)}:{node.lineno}", name, node))
    return found


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else kw.value
    return None


# --- 1. yaml.safe_load only ----------------------------------------------------------------

@pytest.mark.parametrize("payload", [
    "!!python/object/apply:os.system ['touch {marker}']",
    "name: !!python/object/apply:builtins.open ['{marker}', 'w']\nmodel: random:tiny-sd\nprompts: [a]\n",
    "name: t\nmodel: random:tiny-sd\nprompts: [!!python/object/new:builtins.open ['{marker}', 'w']]\n",
    "name: t\nmodel: !!python/name:os.system\nprompts: [a]\n",
])
def test_python_tags_are_rejected_and_never_run(tmp_path, capsys, payload):
    marker = tmp_path / "pwned"
    suite = tmp_path / "suite.yaml"
    suite.write_text(payload.format(marker=marker))
    assert main(["validate", str(suite)]) == 2
    err = capsys.readouterr().err
    assert f"{suite}:" in err and "could not determine a constructor for the tag" in err
    assert "tag:yaml.org,2002:python/" in err
    assert not marker.exists(), "the payload ran"


def test_package_never_uses_an_unsafe_yaml_loader():
    unsafe = _calls(lambda n: n in ("yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.full_load",
                                    "yaml.unsafe_load_all", "yaml.full_load_all", "yaml.Loader",
                                    "yaml.UnsafeLoader", "yaml.FullLoader"))
    assert not unsafe, [where for where, _, _ in unsafe]
    source = "\n".join(p.read_text() for p in PACKAGE.rglob("*.py"))
    assert not re.search(r"\byaml\.(Unsafe|Full)?Loader\b", source)  # not even passed as Loader=...
    assert _calls(lambda n: n in ("yaml.safe_load", "yaml.SafeLoader")), "the scan finds the loader in use"


# --- 2. trust_remote_code only when the suite says so ------------------------------------------

def test_trust_remote_code_is_a_strict_opt_in(tmp_path, capsys):
    default = t2ibench.load_suite(_write(tmp_path / "a.yaml", suite_dict()))
    assert default.trust_remote_code is False
    assert "trust_remote_code" not in default.raw()  # suites that never set it keep their hash
    on = t2ibench.load_suite(_write(tmp_path / "b.yaml", suite_dict(trust_remote_code=True)))
    assert on.trust_remote_code is True and on.resolved()["trust_remote_code"] is True
    for value in ("yes please", 1, "true"):  # only a YAML boolean counts as saying so
        path = _write(tmp_path / "c.yaml", suite_dict(trust_remote_code=value))
        assert main(["validate", str(path)]) == 2
        assert "trust_remote_code: input should be a valid boolean" in capsys.readouterr().err


class _FakePipe:
    def to(self, *args, **kwargs):
        return self


@pytest.fixture
def pretrained_calls(monkeypatch):
    """Replaces diffusers' pipeline loaders; records the kwargs of every call."""
    import diffusers

    calls: list[dict] = []

    def fake(cls):
        def from_pretrained(location, **kwargs):
            calls.append({"cls": cls, "location": str(location), **kwargs})
            return _FakePipe()
        return from_pretrained

    monkeypatch.setattr(diffusers.AutoPipelineForText2Image, "from_pretrained", fake("auto"))
    monkeypatch.setattr(diffusers.DiffusionPipeline, "from_pretrained", fake("diffusion"))
    return calls


@pytest.mark.parametrize("model", ["folder", "some-org/some-model"])
def test_load_pipeline_passes_trust_remote_code_only_when_true(tmp_path, pretrained_calls, model):
    from t2ibench.backends.torch.loading import load_pipeline

    spec = str(tmp_path) if model == "folder" else model
    load_pipeline(spec, precision="fp32")
    load_pipeline(spec, precision="fp32", trust_remote_code=False)
    load_pipeline(spec, precision="fp32", trust_remote_code=True)
    assert [c["location"] for c in pretrained_calls] == [spec] * 3
    assert "trust_remote_code" not in pretrained_calls[0] and "trust_remote_code" not in pretrained_calls[1]
    assert pretrained_calls[2]["trust_remote_code"] is True


def _folder_model(monkeypatch, folder: Path) -> list[dict]:
    """``folder`` "holds" random:tiny-sd: diffusers' loader is replaced; returns the kwargs of its calls."""
    import diffusers

    from t2ibench.backends.torch.random_models import RANDOM_PIPELINES

    calls: list[dict] = []

    def from_pretrained(location, **kwargs):
        assert Path(location) == folder
        calls.append(kwargs)
        return RANDOM_PIPELINES.get("tiny-sd")(device="cpu")

    monkeypatch.setattr(diffusers.AutoPipelineForText2Image, "from_pretrained", from_pretrained)
    folder.mkdir(exist_ok=True)
    return calls


def test_a_run_passes_trust_remote_code_when_the_suite_says_so(tmp_path, monkeypatch):
    """End to end: suite → plan → executor → worker → backend → diffusers ``from_pretrained``.
    The default (False) goes the same way in ``hostile_run`` below."""
    calls = _folder_model(monkeypatch, tmp_path / "model")
    data = suite_dict(model=str(tmp_path / "model"), prompts=["a cat"], seeds=[0], trust_remote_code=True,
                      timing={"warmup": 0, "repeats": 1}, defaults={"steps": 1, "width": 32, "height": 32})
    run = t2ibench.run(_write(tmp_path / "suite.yaml", data), out=tmp_path / "run", device="cpu")
    assert [c.get("trust_remote_code") for c in calls] == [True]
    assert set(run.cells()["status"]) == {"ok"}


def test_a_run_never_passes_trust_remote_code_by_default(hostile_run):
    *_, calls = hostile_run
    assert calls and all("trust_remote_code" not in c for c in calls)  # not even False: diffusers' default


# --- 3. torch.load(weights_only=True), safetensors ---------------------------------------------

def test_every_torch_load_in_the_package_is_weights_only():
    loads = _calls(lambda n: n == "torch.load" or n.endswith(".torch.load"))
    assert loads, "the scan finds the torch.load calls"
    unsafe = [where for where, _, call in loads if _keyword(call, "weights_only") is not True]
    assert not unsafe, f"torch.load without weights_only=True at {unsafe}"
    assert not _calls(lambda n: n in ("pickle.load", "pickle.loads", "torch.jit.load", "dill.load", "cloudpickle.load"))
    pickled = [where for where, _, call in _calls(lambda n: n in ("np.load", "numpy.load"))
               if _keyword(call, "allow_pickle") not in (None, False)]
    assert not pickled, f"np.load with allow_pickle at {pickled}"


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):  # unpickling calls open(marker, "w"): a file appears if it ever runs
        return (open, (str(self.marker), "w"))


def test_a_weights_file_with_a_malicious_pickle_is_refused(tmp_path):
    from t2ibench.metrics import networks

    marker = tmp_path / "pwned"
    evil = tmp_path / "pt_inception-2015-12-05.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(1), "payload": _Evil(marker)}, evil)
    assert not marker.exists()
    with pytest.raises(UserError) as info:
        networks._inception(random=False, weights=str(evil))
    assert str(evil) in str(info.value) and "refused weights file" in str(info.value)
    assert "open" in str(info.value)  # names what the pickle asked for
    assert not marker.exists(), "the pickle ran"


def test_weights_files_round_trip_as_tensors(tmp_path):
    from safetensors.torch import save_file

    from t2ibench.metrics.weights import load_state_dict_file

    state = {"a.weight": torch.arange(6.0).reshape(2, 3), "b.bias": torch.ones(2)}
    torch.save(state, tmp_path / "w.pth")
    save_file(state, str(tmp_path / "w.safetensors"))
    for name in ("w.pth", "w.safetensors"):
        loaded = load_state_dict_file(tmp_path / name)
        assert set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(UserError, match="cannot read weights file"):
        load_state_dict_file(tmp_path / "junk.safetensors")


# --- 4. names never become paths ---------------------------------------------------------------

PAYLOAD = '<script>alert(1)</script> "quoted" \' | pipe'
CONFIG_NAMES = ["../../etc/x", "/abs/a\\b", PAYLOAD + " back\\|slash"]  # the first takes "default"'s place
PROMPTS = [PAYLOAD + " prompt", "../../outside"]


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".", "a\\b", "~", "A", "x y", ""])
def test_suite_names_cannot_hold_paths(tmp_path, capsys, name):
    path = _write(tmp_path / "suite.yaml", suite_dict(name=name))
    assert main(["validate", str(path)]) == 2
    assert f"{path}:1: name: string should match pattern '^[a-z0-9_-]+$'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """A tiny run whose config names and prompts are path traversals and HTML/markdown payloads.

    Its model is a folder (random:tiny-sd behind a replaced diffusers loader) and the suite does
    not set trust_remote_code. Returns (root folder, run, the loader calls' kwargs).
    """
    root = tmp_path_factory.mktemp("hostile")
    (root / "cwd").mkdir()
    # guidance <= 1: no classifier-free guidance, one UNet pass a step; 1.0 is the defaults' config
    include = [{"name": n, "guidance_scale": g} for n, g in zip(CONFIG_NAMES, (1.0, 0.5, 0.0))]
    data = suite_dict(model=str(root / "model"), prompts=PROMPTS, seeds=[0], include=include,
                      timing={"warmup": 0, "repeats": 1},
                      defaults={"steps": 1, "width": 32, "height": 32, "guidance_scale": 1.0})
    suite = _write(root / "suite.yaml", data)
    with pytest.MonkeyPatch.context() as mp:
        calls = _folder_model(mp, root / "model")
        mp.chdir(root / "cwd")  # anything written relative to the working directory shows up here
        run = t2ibench.run(suite, out=root / "run", device="cpu")
    return root, run, calls


def test_config_names_never_become_paths(hostile_run):
    root, run, _ = hostile_run
    cells = run.cells()
    assert set(cells["status"]) == {"ok"} and set(cells["config"]) == set(CONFIG_NAMES)
    files = [p.relative_to(root) for p in root.rglob("*") if p.is_file()]
    outside = [p for p in files if p.parts[0] != "run" and p != Path("suite.yaml")]
    assert not outside, outside
    assert not list((root / "cwd").iterdir())
    for escaped in (root / "etc", root.parent / "etc", root / "abs", Path("/abs")):
        assert not escaped.exists()
    images = sorted(p for p in files if p.suffix == ".png" and p.parts[1] == "images")
    assert len(images) == len(cells) == len(CONFIG_NAMES) * len(PROMPTS)
    for _, c in cells.iterrows():
        assert re.fullmatch(r"images/[0-9a-f]{12}/p[0-9a-f]{10}-0\.png", c["image_path"]), c["image_path"]
        assert c["image_path"].split("/")[1] == c["config_id"]
        assert (root / "run" / c["image_path"]).resolve().is_relative_to((root / "run").resolve())


# --- 5. reports escape user strings -----------------------------------------------------------

def test_report_html_escapes_prompts_and_config_names(hostile_run):
    root, *_ = hostile_run
    raw = (root / "run" / "report.html").read_text()
    assert "<script>alert(1)" not in raw
    page = ParsedPage()
    page.feed(raw)
    assert [t for t, _ in page.tags].count("script") == 1  # only the report's own
    handlers = [(t, a) for t, attrs in page.tags for a in attrs if a.lower().startswith("on")]
    assert not handlers, handlers
    text = "".join(page.text)
    assert PAYLOAD + " prompt" in text  # shown literally, as text
    assert all(name in text for name in CONFIG_NAMES)
    alts = [attrs.get("alt", "") for t, attrs in page.tags if t == "img" and "data-seed" in attrs]
    assert alts and any(a.startswith(PAYLOAD + " prompt (") for a in alts)  # quotes did not end the attribute
    assert any(f"({CONFIG_NAMES[2]}, seed 0)" in a for a in alts)


def _gfm_cells(line: str) -> list[str]:
    """Split a GFM table row on unescaped pipes (a backslash escapes the next character)."""
    cells, cur, i = [], "", 0
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            cur += body[i:i + 2]
            i += 2
            continue
        if ch == "|":
            cells.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    if cur.strip():
        cells.append(cur)
    return cells


def _unescape_md(cell: str) -> str:
    return re.sub(r"\\(.)", r"\1", cell.strip())


def test_report_md_table_survives_pipes_and_backslashes(hostile_run):
    root, run, _ = hostile_run
    lines = (root / "run" / "report.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| config |"))
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append(line)
    header = _gfm_cells(table[0])
    rows = [_gfm_cells(line) for line in table[2:]]
    assert len(rows) == len(CONFIG_NAMES)
    assert all(len(r) == len(header) for r in rows), [len(r) for r in rows]
    assert {_unescape_md(r[0]) for r in rows} == set(CONFIG_NAMES)


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def test_manifest_keeps_names_as_data(hostile_run):
    root, *_ = hostile_run
    manifest = json.loads((root / "run" / "manifest.json").read_text())
    assert {c["name"] for c in manifest["suite"]["configs"]} == set(CONFIG_NAMES)
