"""Project tools, not model code: the roadmap checker (`python -m tools.roadmap`)."""
