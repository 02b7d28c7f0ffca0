"""Benchmarks of the training path and the search platform: `python -m benchmarks.run`.

Every table is measured side by side in one run (same machine, same load), printed, and written
as JSON; `benchmarks/RESULTS.md` records the numbers and what they mean.
"""
