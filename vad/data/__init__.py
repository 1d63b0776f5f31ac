"""Data: benchmark datasets on disk, training sets, and fetching public datasets
(`vad data fetch`: download official archives, convert them into the layout `vad eval` reads)."""
