"""VadCLIP (Wu et al., AAAI 2024): a weakly supervised adapter over frozen CLIP snippet
embeddings (docs/vadclip.md). Importing this package registers the `vadclip` scorer."""

from models.vadclip import scorer  # noqa: F401  (registers "vadclip")
