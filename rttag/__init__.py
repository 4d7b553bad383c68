"""rttag: streaming, real-time audio tagging daemon (JSON Lines on/off events)."""

__version__ = "0.1.0"

LABELS = ("speech", "music", "dog", "bird", "footsteps", "door", "engine", "alarm", "water", "explosion")
"""The fixed label vocabulary, in model output order."""
