"""Data: benchmark datasets on disk, training sets, and fetching public datasets."""
