"""Anomaly scorers and their registry. Importing this package registers the built-ins."""

from models.base import (InputSpec, LearningType, Scorer, get_scorer, get_scorer_class,
                         list_scorers, load_scorer, register_scorer)
from models import frame_diff  # noqa: F401  (registers "frame-diff")
from models import ct_d2gan  # noqa: F401  (registers "ct-d2gan")
from models import motion  # noqa: F401  (registers "motion")
from models import patrol  # noqa: F401  (registers "patrol")
from models import vadclip  # noqa: F401  (registers "vadclip")

__all__ = ["InputSpec", "LearningType", "Scorer", "get_scorer", "get_scorer_class",
           "list_scorers", "load_scorer", "register_scorer"]
