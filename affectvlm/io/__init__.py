"""Reading what users bring (work in progress: see formats.py / sequence.py)."""
