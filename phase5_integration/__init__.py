"""integration project. Not implemented yet: see README.md."""
