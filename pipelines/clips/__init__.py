"""The clip recipe: raw videos -> ``clips/v1`` shards. Stages one per file; the stage list and
what the driver needs (``CLIPS``) in ``recipe.py``."""
