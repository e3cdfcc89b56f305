"""The onnxruntime engine: each network exported with ``torch.onnx.export(..., dynamo=True)`` into the export
cache (converted to float16 when asked), run as an ``InferenceSession`` on the chosen execution provider."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from t2ibench.backends import Finding
from t2ibench.backends.exported import load_exported, missing_packages, preflight_findings
from t2ibench.backends.onnxruntime import GRAPH_OPTIMIZATION, PACKAGES, PROVIDERS
from t2ibench.errors import SkipConfig

if TYPE_CHECKING:
    from t2ibench.backends.common import ConfigKnobs as Knobs

EXTRA = "onnx"
_LEVELS = dict(zip(GRAPH_OPTIMIZATION, ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED",
                                         "ORT_ENABLE_ALL")))


def preflight(model: str, knobs: Knobs, device: str | None) -> list[Finding]:
    return preflight_findings("onnxruntime", knobs, PACKAGES, EXTRA)


class OnnxExport:
    """The :class:`~t2ibench.backends.exported.ExportEngine` of ONNX Runtime."""

    name = "onnxruntime"
    export_fields = ("fp16",)
    packages = PACKAGES

    def export(self, module, examples: tuple, folder: Path, options) -> None:
        import torch
        from torch.export import Dim

        path = folder / "model.onnx"
        dynamic = (tuple({i: Dim.AUTO for i in range(t.ndim)} for t in examples),)  # forward(*tensors)
        program = torch.onnx.export(module, examples, dynamo=True, dynamic_shapes=dynamic, verbose=False,
                                    input_names=[f"input_{i}" for i in range(len(examples))])
        program.save(str(path))
        if options.fp16:
            import onnx
            from onnxruntime.transformers.float16 import convert_float_to_float16

            onnx.save(convert_float_to_float16(onnx.load(str(path)), keep_io_types=True), str(path))

    def compile(self, folder: Path, options, shapes: list | None, profile_prefix: str | None = None):
        import onnxruntime as ort

        provider = PROVIDERS[options.provider]
        if provider not in ort.get_available_providers():
            raise SkipConfig(f"onnxruntime provider {options.provider} ({provider}) is not available here "
                             f"(available: {', '.join(ort.get_available_providers())})")
        if options.io_binding and options.provider == "cpu":
            raise SkipConfig("io_binding binds to a device: it needs provider cuda or tensorrt")
        so = ort.SessionOptions()
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[options.graph_optimization])
        if options.intra_op_threads:
            so.intra_op_num_threads = options.intra_op_threads
        if profile_prefix:
            so.enable_profiling = True
            so.profile_file_prefix = profile_prefix
        session = ort.InferenceSession(str(folder / "model.onnx"), so, providers=[provider])
        used = session.get_providers()
        if used[0] != provider:  # onnxruntime falls back to the CPU when a provider fails to start
            raise SkipConfig(f"onnxruntime provider {options.provider} did not start here (the session runs on "
                             f"{', '.join(used)})")
        # input_<k> is the call's k-th tensor (the exporter may drop an input the graph does not use)
        inputs = {i.name: int(i.name.removeprefix("input_")) for i in session.get_inputs()}

        def run(arrays: list) -> list:
            feed = {name: arrays[k] for name, k in inputs.items()}
            if not options.io_binding:
                return session.run(None, feed)
            binding = session.io_binding()
            for n, a in feed.items():
                binding.bind_cpu_input(n, a)
            for out in session.get_outputs():
                binding.bind_output(out.name, "cuda")
            session.run_with_iobinding(binding)
            return binding.copy_outputs_to_cpu()

        if profile_prefix:
            return run, session
        return run, {"providers": used, "graph_optimization": options.graph_optimization,
                     "intra_op_threads": so.intra_op_num_threads, "io_binding": options.io_binding,
                     "fp16": options.fp16}

    def profiled(self, folder: Path, options, shapes: list | None, tmp: Path):
        """onnxruntime's session profiling: its own Chrome trace, and each node's kernel time by operator type."""
        run, session = self.compile(folder, options, shapes, profile_prefix=str(tmp / f"ort-{folder.name}"))

        def collect():
            import json

            events = json.loads(Path(session.end_profiling()).read_text())
            ops = [(e["args"]["op_name"], e["dur"] / 1000.0) for e in events
                   if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time") and "op_name" in e["args"]]
            return events, ops

        return run, collect


class OnnxRuntimeBackend:
    """The engine of the ``onnxruntime`` backend (declared in ``t2ibench.backends.onnxruntime``)."""

    name = "onnxruntime"

    def load(self, model: str, knobs: Knobs, device: str, *, trust_remote_code: bool = False):
        why = missing_packages(PACKAGES, EXTRA)
        if why:
            raise SkipConfig(f"backend 'onnxruntime' {why}")
        return load_exported(OnnxExport(), model, knobs, device, trust_remote_code=trust_remote_code)
