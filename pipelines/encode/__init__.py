"""The encoder stages both recipes use (VAE latents, SigLIP anchors, umT5 text), parameterised
by the columns they work on; each recipe subclasses them with its registry (``clips/encode.py``,
``pairs/encode.py``)."""
