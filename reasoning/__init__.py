"""AnomalyRuler-style reasoning: describe frames, induce rules, deduce, smooth, explain alerts."""
