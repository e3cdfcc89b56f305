"""``compile: {regional: true}``: diffusers' ``compile_repeated_blocks`` (each repeated block compiled in
place with ``Module.compile``) instead of ``torch.compile`` of the whole denoiser; undone for the next config."""

from __future__ import annotations

from typing import Callable

from t2ibench.errors import SkipConfig


def compiled_regions(denoiser) -> dict[str, int]:
    """Observed: the modules whose call goes through a compiled function, counted per class."""
    regions: dict[str, int] = {}
    for module in denoiser.modules():
        if getattr(module, "_compiled_call_impl", None) is not None:
            regions[type(module).__name__] = regions.get(type(module).__name__, 0) + 1
    return regions


def compile_regions(denoiser, options) -> tuple[dict[str, int], Callable[[], None]]:
    """Compile the denoiser's repeated blocks with ``options`` (CompileOptions); returns the regions observed
    and the undo."""
    name = type(denoiser).__name__
    if not getattr(denoiser, "_repeated_blocks", None) or not hasattr(denoiser, "compile_repeated_blocks"):
        raise SkipConfig(f"compile regional: {name} declares no repeated blocks (_repeated_blocks) to compile")
    before = {m for m in denoiser.modules() if getattr(m, "_compiled_call_impl", None) is not None}
    try:
        denoiser.compile_repeated_blocks(**options.torch_compile_kwargs())
    except ValueError as e:
        raise SkipConfig(f"compile regional: {str(e).splitlines()[0]}") from e
    compiled = [m for m in denoiser.modules()
                if getattr(m, "_compiled_call_impl", None) is not None and m not in before]

    def undo() -> None:
        for module in compiled:
            module._compiled_call_impl = None  # what Module.compile set; the eager forward is back

    regions = compiled_regions(denoiser)
    if not compiled:
        undo()
        raise SkipConfig(f"compile regional: no block of {name} was compiled")
    return regions, undo
