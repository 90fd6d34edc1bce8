"""Analyses that reproduce SPEED-Bench's findings from the suite's records."""
