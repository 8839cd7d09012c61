"""Edit-pair datasets (SAMA.md section 4): manifests, corpus presets, alignment checks, demo set.

Pure library pieces, no Ray: ``read_pairs`` turns a manifest into ``PairItem``s (and
``BadRow``s for rows that cannot be pairs), ``get_preset`` knows the public corpora's layouts,
``align_pair`` checks that source and target can be encoded as one pair. The build stages in
``pipelines/`` wire them together.
"""

from sama.pairs.align import AlignConfig, ImageInfo, PairPlan, align_pair, probe_media, read_image
from sama.pairs.manifest import BadRow, PairColumns, PairItem, PairManifestConfig, read_pairs
from sama.pairs.presets import PairPreset, get_preset, list_presets

__all__ = [
    "AlignConfig",
    "BadRow",
    "ImageInfo",
    "PairColumns",
    "PairItem",
    "PairManifestConfig",
    "PairPlan",
    "PairPreset",
    "align_pair",
    "get_preset",
    "list_presets",
    "probe_media",
    "read_image",
    "read_pairs",
]
