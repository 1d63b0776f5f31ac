"""Benchmark data: download official dataset archives and convert them into the layout
`vad eval` reads (`vad data fetch`)."""
