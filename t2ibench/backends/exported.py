"""Export-and-swap: run a diffusers pipeline's networks in another inference engine.

This follows optimum's approach (optimum-intel's ``OVStableDiffusionPipeline``, optimum-onnx's
``ORTStableDiffusionPipeline``): each network of the pipeline (the text encoders, the denoiser, the VAE
decoder) is exported on its own, and the exported models run in place of the torch modules while the
tokenizers and the scheduler stay diffusers'. optimum cannot be installed beside our diffusers and
transformers pins, so this module does the same in a few hundred lines, shared by the ``openvino`` and
``onnxruntime`` backends:

1. the pipeline loads on CPU in fp32 with the torch backend's loader (``random:`` specs included);
2. its networks are fingerprinted (class, config and weights) into a cache key, with the package versions
   and the options that change an export; a key found in the cache (``$T2IBENCH_CACHE``, default
   ``~/.cache/t2ibench``, folder ``exports/<engine>/``) is reused as it is;
3. otherwise one short traced call (forward hooks) captures each network's inputs and outputs, and each
   network is exported by the engine from those example inputs (tensors as graph inputs, the other
   arguments as constants); the call structure is saved beside the exported files;
4. each network is replaced by a :class:`SwappedModule` that looks like the torch module to diffusers
   (``config``, ``dtype``, ``device``, read-only attributes of the original structure, diffusers' output
   types) and runs the engine's compiled model on numpy arrays. The torch weights are then dropped.

The call itself (paired latents, the timing marks, peak RSS) is the torch backend's: :class:`ExportedModel`
is a :class:`~t2ibench.backends.torch.engine.TorchModel` whose networks are swapped.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from t2ibench.backends.torch.engine import TorchModel
from t2ibench.errors import SkipConfig

if TYPE_CHECKING:
    from t2ibench.backends.common import ConfigKnobs as Knobs

EXPORT_FORMAT = 1  # bump when what is written to the cache changes
TEXT_ENCODERS = ("text_encoder", "text_encoder_2", "text_encoder_3")
DENOISERS = ("unet", "transformer")
Runner = Callable[[list], list]  # numpy arrays in (the graph's inputs, in order), numpy arrays out


def cache_root() -> Path:
    """t2ibench's cache: ``$T2IBENCH_CACHE``, else ``$XDG_CACHE_HOME/t2ibench``, else ``~/.cache/t2ibench``."""
    if os.environ.get("T2IBENCH_CACHE"):
        return Path(os.environ["T2IBENCH_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "t2ibench"


def missing_packages(packages: dict[str, str], extra: str) -> str | None:
    """Why the engine cannot run here (``packages``: import name → distribution), or None."""
    missing = [dist for module, dist in packages.items() if importlib.util.find_spec(module) is None]
    if not missing:
        return None
    return f"needs {', '.join(missing)}: pip install 't2ibench[{extra}]'"


def unsupported_knobs(backend: str, knobs: Knobs) -> list[tuple[str, str]]:
    """(knob, why) for the common knobs an export engine cannot honour: the preflight and the engine say the same."""
    found = []
    if knobs.precision != "fp32":
        found.append(("precision", f"backend '{backend}' exports the fp32 model; precision '{knobs.precision}' is "
                                   "the engine's own option there"))
    for knob in ("vae_slicing", "vae_tiling"):
        if getattr(knobs, knob):
            found.append((knob, f"{knob} is a feature of the torch VAE; backend '{backend}' runs the exported "
                                "decoder whole"))
    return found


def preflight_findings(backend: str, knobs: Knobs, packages: dict[str, str], extra: str) -> list:
    """The skips a config of an export engine always meets here: a missing package, an unsupported knob."""
    from t2ibench.backends import Finding

    why = missing_packages(packages, extra)
    found = [Finding("skip", "backend", f"backend '{backend}' {why}")] if why else []
    return found + [Finding("skip", knob, message) for knob, message in unsupported_knobs(backend, knobs)]


# -- call structure: the tensors of a call, and everything else as JSON constants ------------------------
def flatten(value: Any, leaves: list) -> Any:
    """The structure of ``value`` as JSON, with its tensors appended to ``leaves`` (in order)."""
    import torch

    if isinstance(value, torch.Tensor):
        leaves.append(value)
        return {"tensor": len(leaves) - 1}
    if isinstance(value, (list, tuple)):
        return {"seq": type(value).__name__, "items": [flatten(v, leaves) for v in value]}
    if isinstance(value, dict):  # plain dicts and diffusers'/transformers' output classes (dict subclasses)
        cls = type(value)
        return {"map": f"{cls.__module__}:{cls.__qualname__}", "keys": list(value),
                "items": [flatten(v, leaves) for v in value.values()]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"const": value}
    raise TypeError(f"cannot export an argument of type {type(value).__name__}")


def unflatten(spec: dict, leaves: list) -> Any:
    if "tensor" in spec:
        return leaves[spec["tensor"]]
    if "const" in spec:
        return spec["const"]
    items = [unflatten(s, leaves) for s in spec["items"]]
    if "seq" in spec:
        return tuple(items) if spec["seq"] == "tuple" else items
    module, _, name = spec["map"].partition(":")
    if module != "builtins" and not module.startswith(("diffusers.", "transformers.")):
        raise ValueError(f"unexpected output class {spec['map']} in an export manifest")
    cls = getattr(importlib.import_module(module), name)
    return cls(**dict(zip(spec["keys"], items)))


# -- one network -----------------------------------------------------------------------------------------
@dataclass
class Captured:
    """One network's first call in the traced run: its inputs and the structure of its output."""

    args: tuple
    kwargs: dict
    output: Any


@dataclass
class NetworkExport:
    """What the cache holds of one network: its call structure and the dtypes of its graph inputs."""

    name: str  # the pipeline attribute: unet, text_encoder, vae…
    method: str  # forward | decode
    inputs: dict  # flatten((args, kwargs)) of a call
    dtypes: list[str]  # numpy dtype of each graph input
    output: dict  # flatten(output)


class ExportEngine(Protocol):
    """What an engine brings to the shared machinery (see the openvino and onnxruntime backends)."""

    name: str
    export_fields: tuple[str, ...]  # the options that change an exported file (part of the cache key)
    packages: dict[str, str]  # import name → distribution, for the cache key's versions

    def export(self, module, examples: tuple, folder: Path, options) -> None:
        """Export ``module(*examples)`` (tensors in, a tuple of tensors out) into ``folder``."""

    def compile(self, folder: Path, options, shapes: list | None) -> tuple[Runner, dict]:
        """A runner for the exported network in ``folder`` and what was observed of it (``applied``).
        ``shapes``: static input shapes to compile for, or None."""

    def profiled(self, folder: Path, options, shapes: list | None, tmp: Path) -> tuple[Runner, Callable]:
        """A runner with the engine's profiler on, and a function that, after the calls, returns the trace
        events (Chrome trace format) and ``(operator, self ms)`` per executed operator."""


def flat_module(target, method: str, inputs: dict):
    """``target``'s ``method`` as a function of the call's tensors alone, returning a tuple of tensors: what is
    exported (the call's other arguments are constants of the graph)."""
    import torch

    class Flat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.target = target

        def forward(self, *tensors):
            args, kwargs = unflatten(inputs, list(tensors))
            fn = self.target if method == "forward" else getattr(self.target, method)
            leaves: list = []
            flatten(fn(*args, **kwargs), leaves)
            return tuple(leaves)

    return Flat().eval()


@functools.cache
def swapped_module_class() -> type:
    """The class of the stand-ins (defined on first use: torch is imported only when a run needs it)."""
    import torch

    class SwappedModule(torch.nn.Module):
        """Stands in a pipeline for one torch network and runs its exported version.

        ``config`` is the original's; other attributes are read from the original structure kept on the
        ``meta`` device (no weights). Every call is checked against the exported call structure.
        """

        def __init__(self, export: NetworkExport, original, dtype):
            super().__init__()
            object.__setattr__(self, "_original", original.to("meta"))
            self.export = export
            self.config = original.config
            self._dtype = dtype
            self.runner: Runner | None = None
            self.seen_shapes: list | None = None  # set to [] to record the input shapes of the next calls

        def __getattr__(self, name: str):
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(object.__getattribute__(self, "_original"), name)

        @property
        def dtype(self):
            return self._dtype

        @property
        def device(self):
            return torch.device("cpu")

        def run(self, args: tuple, kwargs: dict):
            import numpy as np

            leaves: list = []
            spec = json.loads(json.dumps(flatten((args, kwargs), leaves)))
            if spec != self.export.inputs:
                raise RuntimeError(f"{self.export.name} is called unlike its exported call "
                                   f"(exported: {self.export.inputs}; now: {spec})")
            arrays = [np.require(t.detach().cpu().numpy().astype(d, copy=False), requirements="C")
                      for t, d in zip(leaves, self.export.dtypes)]
            if self.seen_shapes is not None:
                self.seen_shapes.append([a.shape for a in arrays])
            outputs = [torch.from_numpy(np.asarray(o)) for o in self.runner(arrays)]
            return unflatten(self.export.output, outputs)

        def forward(self, *args, **kwargs):
            return self.run(args, kwargs)

        def decode(self, z, return_dict: bool = True, generator=None, **_ignored):
            """The VAE decoder (``generator`` and other sampling arguments do not reach it)."""
            from diffusers.models.autoencoders.vae import DecoderOutput

            sample = self.run((z,), {"return_dict": False})[0]
            return DecoderOutput(sample=sample) if return_dict else (sample,)

    return SwappedModule


# -- capture, fingerprint, export ------------------------------------------------------------------------
def networks(pipe) -> dict[str, Any]:
    """The pipeline's networks to export: its text encoders, its denoiser and its VAE (decoder)."""
    names = [n for n in (*TEXT_ENCODERS, *DENOISERS, "vae") if getattr(pipe, n, None) is not None]
    return {n: getattr(pipe, n) for n in names}


def fingerprint(pipe, engine: ExportEngine, options) -> str:
    """The cache key: each network's class, config and weights, the pipeline class, the engine's export
    options and the versions of the packages that write or read the export."""
    import torch

    h = hashlib.sha256()
    packages = {"torch": "torch", "diffusers": "diffusers", "transformers": "transformers", **engine.packages}
    versions = {dist: importlib.metadata.version(dist) for dist in sorted(set(packages.values()))}
    head = {"format": EXPORT_FORMAT, "engine": engine.name, "pipeline": type(pipe).__name__, "versions": versions,
            "options": {f: getattr(options, f) for f in engine.export_fields}}
    h.update(json.dumps(head, sort_keys=True, default=str).encode())
    for name, module in networks(pipe).items():
        config = module.config.to_dict() if hasattr(module.config, "to_dict") else dict(module.config)
        # without the private keys (diffusers' _use_default_values is a list in set order, _name_or_path a location)
        config = json.dumps({k: v for k, v in config.items() if not k.startswith("_")}, sort_keys=True, default=str)
        h.update(f"{name}:{type(module).__name__}:{config}".encode())
        for key, tensor in module.state_dict().items():
            t = tensor.detach().cpu().contiguous()
            h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def capture(pipe, knobs: Knobs) -> dict[str, Captured]:
    """One short call (two steps at the config's size) recording each network's first call."""
    import torch

    found: dict[str, Captured] = {}
    hooks = []
    for name, module in networks(pipe).items():
        if name == "vae":
            continue

        def hook(mod, args, kwargs, output, name=name):
            if name not in found:
                found[name] = Captured(args, dict(kwargs), output)

        hooks.append(module.register_forward_hook(hook, with_kwargs=True))
    vae = pipe.vae
    decode = type(vae).decode.__get__(vae)

    def decode_hook(z, *args, **kwargs):
        out = decode(z, *args, **kwargs)
        if "vae" not in found:  # exported as decode(z, return_dict=False): the sample alone
            found["vae"] = Captured((z,), {"return_dict": False}, (out.sample if hasattr(out, "sample") else out[0],))
        return out

    vae.decode = decode_hook
    try:
        with torch.inference_mode():
            pipe(prompt=["a photo of a cat"] * knobs.batch_size, num_inference_steps=2,
                 guidance_scale=knobs.guidance_scale, height=knobs.height, width=knobs.width, output_type="np")
    finally:
        for h in hooks:
            h.remove()
        del vae.decode
    return found


def _example(name: str, captured: Captured) -> tuple[dict, list, dict]:
    """(input structure, example tensors, output structure) of a captured call; a denoiser's integer
    timestep is exported as float32 (it casts it to float itself), so that every scheduler fits."""
    leaves: list = []
    inputs = flatten((captured.args, captured.kwargs), leaves)
    if name in DENOISERS:
        leaves = [t.float() if not t.is_floating_point() else t for t in leaves]
    leaves = [t.detach().clone() for t in leaves]
    out_leaves: list = []
    output = flatten(captured.output, out_leaves)
    return json.loads(json.dumps(inputs)), leaves, json.loads(json.dumps(output))


def export_pipeline(pipe, knobs: Knobs, engine: ExportEngine, options, folder: Path) -> list[NetworkExport]:
    """Capture and export every network of ``pipe`` into ``folder`` (written whole, then renamed)."""
    import torch

    found = capture(pipe, knobs)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    exports = []
    try:
        for name, module in networks(pipe).items():
            if name not in found:
                continue  # not called when generating (an image encoder, a safety checker): stays as it is
            inputs, examples, output = _example(name, found[name])
            method = "decode" if name == "vae" else "forward"
            (tmp / name).mkdir()
            with torch.no_grad():
                engine.export(flat_module(module, method, inputs), tuple(examples), tmp / name, options)
            exports.append(NetworkExport(name, method, inputs, [str(t.numpy().dtype) for t in examples], output))
        (tmp / "manifest.json").write_text(json.dumps([e.__dict__ for e in exports], indent=1))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.replace(tmp, folder)
    except OSError:  # another process wrote the same key meanwhile: theirs is as good
        shutil.rmtree(tmp, ignore_errors=True)
    return exports


# -- the loaded model ------------------------------------------------------------------------------------
@dataclass
class ExportInfo:
    folder: Path
    cache_hit: bool
    export_ms: float
    networks: list[str] = field(default_factory=list)


class ExportedModel(TorchModel):
    """A diffusers pipeline whose networks run in an export engine; calls are timed as the torch backend's."""

    def __init__(self, pipe, spec, engine: ExportEngine, info: ExportInfo, swapped: dict):
        self.engine = engine
        self.export_info = info
        self.export_ms = info.export_ms
        self.swapped = swapped  # pipeline attribute → SwappedModule
        self._runners: dict[tuple, tuple[Runner, dict]] = {}
        self._shapes: dict = {}  # the config's static input shapes per network (static_shapes), else empty
        super().__init__(pipe, spec, "cpu", "fp32")

    def configure(self, knobs: Knobs) -> dict:
        """The torch engine's undo mechanism for the common runtime knobs (scheduler, prompt-embedding cache),
        then the engine's compiled models for the config's options."""
        self._reset()
        for _, why in unsupported_knobs(self.engine.name, knobs):
            raise SkipConfig(why)
        for apply in (self._apply_scheduler, self._apply_text_embedding_cache):
            undo = apply(knobs, {})
            if undo is not None:
                self._undo.append(undo)
        options = knobs.options
        shapes = self._static_shapes(knobs, options) if getattr(options, "static_shapes", False) else {}
        self._shapes = shapes
        compiled = {}
        for name, module in self.swapped.items():
            module.runner, compiled[name] = self._runner(name, options, shapes.get(name))
        info = self.export_info
        return {"export": {"cache_hit": info.cache_hit, "export_ms": round(info.export_ms, 3),
                           "key": info.folder.name, "networks": info.networks},
                self.engine.name: compiled}

    def _runner(self, name: str, options, shapes) -> tuple[Runner, dict]:
        key = (name, options.model_dump_json(), json.dumps(shapes))
        if key not in self._runners:
            t0 = time.perf_counter()
            runner, facts = self.engine.compile(self.export_info.folder / name, options, shapes)
            self._runners[key] = runner, dict(facts, compile_ms=round((time.perf_counter() - t0) * 1000.0, 3))
        return self._runners[key]

    def profile(self, prompts: list[str], seeds: list[int], knobs: Knobs, path: Path) -> list:
        """One more call, untimed, with the engine's own profiler on (onnxruntime's session profiling, OpenVINO's
        per-layer performance counters): the trace events of every network as a gzipped Chrome trace at
        ``path``, and the operators (``network:operator type``) by self time, the costliest first."""
        import gzip
        import tempfile

        from t2ibench.backends.engine import ProfiledOp

        options = knobs.options
        device = str(getattr(options, "device", None) or getattr(options, "provider", "cpu")).lower()
        saved = {name: module.runner for name, module in self.swapped.items()}
        events: list[dict] = []
        totals: dict[str, list] = {}
        with tempfile.TemporaryDirectory(prefix="t2ibench-profile-") as tmp:
            collect = {}
            for name, module in self.swapped.items():
                module.runner, collect[name] = self.engine.profiled(self.export_info.folder / name, options,
                                                                    self._shapes.get(name), Path(tmp))
            try:
                self._runnable_call(prompts, seeds, knobs)
            finally:
                for name, module in self.swapped.items():
                    module.runner = saved[name]
            for pid, (name, done) in enumerate(collect.items()):
                trace, ops = done()
                events += [dict(e, pid=pid) for e in trace]
                events.append({"name": "process_name", "ph": "M", "pid": pid, "args": {"name": name}})
                for op, ms in ops:
                    total = totals.setdefault(f"{name}:{op}", [0.0, 0])
                    total[0] += ms
                    total[1] += 1
        with gzip.open(path, "wt", encoding="utf-8") as f:
            json.dump({"traceEvents": events}, f)
        ops = [ProfiledOp(name=k, self_ms=v[0], total_ms=v[0], calls=v[1], device=device) for k, v in totals.items()]
        return sorted(ops, key=lambda op: (-op.self_ms, op.name))

    def _static_shapes(self, knobs: Knobs, options) -> dict:
        """The input shapes of each network in a call of this config, seen in one untimed one-step call of the
        dynamic-shape models."""
        import torch

        dynamic = options.model_copy(update={"static_shapes": False})
        for name, module in self.swapped.items():
            module.runner = self._runner(name, dynamic, None)[0]
            module.seen_shapes = []
        try:
            with torch.inference_mode():
                self.pipe(prompt=["shape"] * knobs.batch_size, num_inference_steps=1, output_type="np",
                          guidance_scale=knobs.guidance_scale, height=knobs.height, width=knobs.width,
                          **({"negative_prompt": [knobs.negative_prompt] * knobs.batch_size}
                             if knobs.negative_prompt is not None else {}))
            return {name: [list(s) for s in m.seen_shapes[0]] for name, m in self.swapped.items() if m.seen_shapes}
        finally:
            for module in self.swapped.values():
                module.seen_shapes = None

    def close(self) -> None:
        for module in self.swapped.values():
            module.runner = None
        self._runners.clear()
        super().close()


def load_exported(engine: ExportEngine, model: str, knobs: Knobs, device: str, *,
                  trust_remote_code: bool = False) -> ExportedModel:
    """Load ``model`` in fp32, export its networks through ``engine`` (or find them in the cache) and swap them in."""
    import torch

    from t2ibench.backends.torch.loading import ModelSpec, load_pipeline

    options = knobs.options
    if knobs.precision != "fp32":  # a load-time knob: the whole load group
        raise SkipConfig(unsupported_knobs(engine.name, knobs)[0][1])
    # a random: pipeline is built on the run's device (its weights are drawn per device, as the torch backend's)
    build_on = device if ModelSpec.parse(model).is_random else "cpu"
    pipe = load_pipeline(model, precision="fp32", vae=knobs.vae, device=build_on, trust_remote_code=trust_remote_code)
    pipe.to("cpu")
    folder = cache_root() / "exports" / engine.name / fingerprint(pipe, engine, options)[:24]
    t0 = time.perf_counter()  # export_ms: the cache lookup, and on a miss the traced call and the exports
    hit = (folder / "manifest.json").is_file()
    if hit:
        exports = [NetworkExport(**e) for e in json.loads((folder / "manifest.json").read_text())]
        export_ms = (time.perf_counter() - t0) * 1000.0
    else:
        exports = export_pipeline(pipe, knobs, engine, options, folder)
        export_ms = (time.perf_counter() - t0) * 1000.0
    swapped = {}
    SwappedModule = swapped_module_class()
    for export in exports:
        swapped[export.name] = SwappedModule(export, getattr(pipe, export.name), torch.float32)
        setattr(pipe, export.name, swapped[export.name])
    info = ExportInfo(folder, hit, export_ms, [e.name for e in exports])
    return ExportedModel(pipe, ModelSpec.parse(model), engine, info, swapped)
