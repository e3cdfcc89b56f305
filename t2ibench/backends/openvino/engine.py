"""The openvino engine: each network converted with ``openvino.convert_model`` and saved as IR in the export
cache (weights compressed with nncf when asked), compiled with ``openvino.Core().compile_model``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from t2ibench.backends import Finding
from t2ibench.backends.exported import load_exported, missing_packages, preflight_findings
from t2ibench.backends.openvino import PACKAGES
from t2ibench.errors import SkipConfig

if TYPE_CHECKING:
    from t2ibench.backends.common import ConfigKnobs as Knobs

EXTRA = "openvino"


def preflight(model: str, knobs: Knobs, device: str | None) -> list[Finding]:
    return preflight_findings("openvino", knobs, _needed(knobs.options), EXTRA)


class OpenVINOExport:
    """The :class:`~t2ibench.backends.exported.ExportEngine` of OpenVINO."""

    name = "openvino"
    export_fields = ("weight_compression",)
    packages = PACKAGES

    def export(self, module, examples: tuple, folder: Path, options) -> None:
        import warnings

        import openvino as ov
        import torch

        with warnings.catch_warnings():  # TorchScript's notes on shape checks it records as constants, and
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # torch's deprecation of the tracing that
            warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")  # openvino calls
            model = ov.convert_model(module, example_input=examples)
        if options.weight_compression:
            import contextlib
            import io
            import logging

            import nncf

            nncf.set_log_level(logging.WARNING)  # not its table of bit widths on every export
            quiet = contextlib.ExitStack()  # nor its progress bar: the run's console shows the run's own
            quiet.enter_context(contextlib.redirect_stdout(io.StringIO()))
            quiet.enter_context(contextlib.redirect_stderr(io.StringIO()))
            with quiet:
                if options.weight_compression == "int8":
                    model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
                else:  # group-wise (128): a layer whose channels 128 does not divide gets the largest group that does
                    from nncf.quantization.advanced_parameters import AdvancedCompressionParameters

                    adjust = AdvancedCompressionParameters(
                        group_size_fallback_mode=nncf.GroupSizeFallbackMode.ADJUST)
                    model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT4_SYM,
                                                  advanced_parameters=adjust)
        ov.save_model(model, folder / "model.xml", compress_to_fp16=False)

    def compile(self, folder: Path, options, shapes: list | None, profile: bool = False):
        import openvino as ov

        core = ov.Core()
        _check_device(core, options.device)
        model = core.read_model(folder / "model.xml")
        if shapes is not None:
            model.reshape({port: ov.PartialShape(shape) for port, shape in zip(model.inputs, shapes)})
        config = {}
        if options.inference_precision:
            config["INFERENCE_PRECISION_HINT"] = options.inference_precision
        if options.num_streams:
            config["NUM_STREAMS"] = str(options.num_streams)
        if options.threads:
            config["INFERENCE_NUM_THREADS"] = str(options.threads)
        if profile:
            config["PERF_COUNT"] = True
        compiled = core.compile_model(model, options.device, config)
        n_inputs = len(compiled.inputs)
        request = compiled.create_infer_request()
        counters: list = []  # with profile: each inference's per-layer counters

        def run(arrays: list) -> list:
            if len(arrays) != n_inputs:
                raise RuntimeError(f"the IR in {folder} has {n_inputs} inputs, the call {len(arrays)}")
            outputs = [o.copy() for o in request.infer(arrays).to_tuple()]
            if profile:
                counters.append(request.get_profiling_info())
            return outputs

        return run, (counters if profile else observed(compiled, options, shapes))

    def profiled(self, folder: Path, options, shapes: list | None, tmp: Path):
        """Per-layer performance counters: one trace event per executed layer, laid end to end per inference."""
        run, counters = self.compile(folder, options, shapes, profile=True)

        def collect():
            events, ops, t = [], [], 0.0
            for infer in counters:
                for layer in infer:
                    ms = layer.real_time.total_seconds() * 1000.0
                    if str(layer.status).endswith("NOT_RUN"):
                        continue
                    events.append({"name": layer.node_name, "cat": layer.node_type, "ph": "X", "ts": t * 1000.0,
                                   "dur": ms * 1000.0, "tid": 0, "args": {"exec_type": layer.exec_type}})
                    ops.append((layer.node_type, ms))
                    t += ms
            return events, ops

        return run, collect


def observed(compiled, options, shapes) -> dict:
    """What the compiled model really uses: its devices, inference precision, streams and threads."""
    facts = {"devices": list(compiled.get_property("EXECUTION_DEVICES"))}
    try:  # AUTO answers for the device it picked; a property some plugin lacks is left out
        facts["inference_precision"] = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        facts["num_streams"] = int(compiled.get_property("NUM_STREAMS"))
        facts["threads"] = int(compiled.get_property("INFERENCE_NUM_THREADS"))
    except RuntimeError:
        pass
    facts["static_shapes"] = shapes
    facts["weight_compression"] = options.weight_compression
    return facts


class OpenVINOBackend:
    """The engine of the ``openvino`` backend (declared in ``t2ibench.backends.openvino``)."""

    name = "openvino"

    def load(self, model: str, knobs: Knobs, device: str, *, trust_remote_code: bool = False):
        options = knobs.options
        why = missing_packages(_needed(options), EXTRA)
        if why:
            raise SkipConfig(f"backend 'openvino' {why}")
        return load_exported(OpenVINOExport(), model, knobs, device, trust_remote_code=trust_remote_code)


def _needed(options) -> dict[str, str]:
    return PACKAGES if options.weight_compression else {"openvino": "openvino"}


def _check_device(core, device: str) -> None:
    available = core.available_devices
    if device != "AUTO" and not any(d == device or d.startswith(device + ".") for d in available):
        raise SkipConfig(f"openvino device {device} is not available here (available: {', '.join(available)})")
