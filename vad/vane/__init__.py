"""VANE-Bench: video anomaly questions (4 lettered options, one correct letter, 10 frames per
clip), read in both published forms, answered by any answerer, scored like the official
script, and built from labelled datasets (docs/vane.md)."""
