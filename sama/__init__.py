"""sama: a video-editing dataset engine and trainer for SAMA (arXiv 2603.19228).

Importing ``sama`` is cheap: no torch, no Ray. Heavy packages are imported where they are used.
"""

__version__ = "0.1.0"
