"""The scheduler registry: knob name → diffusers class and options, built ``from_config``.

Each scheduler is built from the pipeline's own scheduler config, so model-specific settings
(beta schedule, prediction type, timestep spacing) carry over. Flow-matching pipelines
(SD3, Flux) accept only flow-matching schedulers; other combinations are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from t2ibench.errors import SkipConfig
from t2ibench.registry import Registry


@dataclass(frozen=True)
class SchedulerRecipe:
    cls: str  # diffusers class for noise-prediction models
    options: dict = field(default_factory=dict)
    flow_cls: str | None = None  # the equivalent for flow-matching models, if any
    needs: str | None = None  # an extra module the class imports


SCHEDULERS: Registry[SchedulerRecipe] = Registry("scheduler")
for _name, _recipe in {
    "ddim": SchedulerRecipe("DDIMScheduler"),
    "pndm": SchedulerRecipe("PNDMScheduler", {"skip_prk_steps": True}),
    "lms": SchedulerRecipe("LMSDiscreteScheduler"),
    "euler": SchedulerRecipe("EulerDiscreteScheduler", flow_cls="FlowMatchEulerDiscreteScheduler"),
    "euler_a": SchedulerRecipe("EulerAncestralDiscreteScheduler"),
    "heun": SchedulerRecipe("HeunDiscreteScheduler", flow_cls="FlowMatchHeunDiscreteScheduler"),
    "dpmpp_2m": SchedulerRecipe(
        "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False}
    ),
    "dpmpp_2m_karras": SchedulerRecipe(
        "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}
    ),
    "dpmpp_sde": SchedulerRecipe("DPMSolverSDEScheduler", {"use_karras_sigmas": True}, needs="torchsde"),
    "unipc": SchedulerRecipe("UniPCMultistepScheduler"),
    "lcm": SchedulerRecipe("LCMScheduler"),
}.items():
    SCHEDULERS.add(_name, _recipe)


def is_flow_matching(scheduler) -> bool:
    return "FlowMatch" in type(scheduler).__name__


def build_scheduler(name: str, current):
    """A new scheduler of kind ``name`` built from ``current.config``; SkipConfig if it cannot fit."""
    import importlib

    import diffusers

    recipe = SCHEDULERS.get(name)
    cls_name = recipe.cls
    if is_flow_matching(current):
        if recipe.flow_cls is None:
            raise SkipConfig(
                f"scheduler '{name}' does not fit the flow-matching model ({type(current).__name__})"
            )
        cls_name = recipe.flow_cls
    if recipe.needs and importlib.util.find_spec(recipe.needs) is None:
        raise SkipConfig(f"scheduler '{name}' needs the '{recipe.needs}' package (pip install {recipe.needs})")
    cls = getattr(diffusers, cls_name)
    options = recipe.options if cls_name == recipe.cls else {}
    return cls.from_config(current.config, **options)
