"""Suites: the schema, YAML loading with file:line errors, matrix expansion and prompt sources.

    suite = load_suite("smoke")            # a path, or a builtin name (t2ibench/suites/builtin/)
    suite.configs()                        # list[Config], content-hashed config_id
    suite.prompt_list(); suite.seed_list()
"""

from t2ibench.suites.expand import default_config_note
from t2ibench.suites.knobs import Knobs
from t2ibench.suites.loader import builtin_suites, load_suite
from t2ibench.suites.problems import SuiteError
from t2ibench.suites.schema import Bound, Config, Prompt, PromptSource, SeedRange, Suite, Timing

__all__ = [
    "Suite", "Config", "Prompt", "PromptSource", "SeedRange", "Timing", "Bound", "Knobs",
    "SuiteError", "load_suite", "builtin_suites", "suite_notes",
]


def suite_notes(suite: Suite) -> list[str]:
    """What a user may not expect of a valid suite (``validate`` and ``run`` print these)."""
    note = default_config_note(suite.raw(), suite.configs())
    return [note] if note else []
