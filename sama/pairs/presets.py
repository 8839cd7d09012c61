"""Presets: the manifest layouts of the public edit-pair corpora SAMA trained on (SAMA.md §4).

Each preset maps one corpus's published layout (file format, field names, where relative paths
point) onto ``PairManifestConfig``, and carries the per-corpus rules from the paper (OpenVE-3M:
drop the first 4 frames of both videos). Every preset's docstring says where its layout comes
from; a field the publisher does not document, or that we could only see in third-party
loaders, is listed in ``assumed`` and flagged in the docstring, so a user can check it against
their copy and override it with ``pairs.columns.*`` (the generic manifest covers anything else).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sama.errors import ConfigError


@dataclass(frozen=True)
class PairPreset:
    """How to read one corpus's manifest (fields as in ``PairManifestConfig``)."""

    name: str
    corpus: str
    format: str
    columns: dict[str, Any]
    media_type: str = "auto"
    drop_first_frames: int = 0
    base: str = ""  # relative to the manifest's folder; "" = that folder
    requires_base_uri: bool = False  # media live outside the manifest's tree
    base_uri_hint: str = ""
    instruction_strip: tuple[str, ...] = ()
    manifest_hint: str = ""  # what to point pairs.uri at
    assumed: tuple[str, ...] = ()  # fields we could not confirm from the publisher
    sources: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    doc: str = field(default="", compare=False)


_PRESETS: dict[str, PairPreset] = {}


def _preset(fn: Callable[[], PairPreset]) -> Callable[[], PairPreset]:
    preset = fn()
    preset = PairPreset(**{**preset.__dict__, "doc": inspect.cleandoc(fn.__doc__ or "")})
    _PRESETS[preset.name] = preset
    return fn


@_preset
def openve_3m() -> PairPreset:
    """OpenVE-3M (Lewandofski/OpenVE-3M on the Hub; arXiv 2512.07826): instruction video edits.

    Layout: one CSV per edit category (``local_change.csv``, ``background_change.csv``, ...)
    with ``original_video`` (source), ``video`` (edited target) and ``prompt``; paths relative
    to the dataset's ``videos/`` root. ASSUMED: the publisher's README (github.com/OpenVE-Team/
    OpenVE-3M) documents no columns; the names come from loaders that train on it: ThinkV2V's
    training scripts (``--data_file_keys "video,original_video"``, ``--dataset_base_path
    $OPENVE3M_VIDEO_ROOT``, DiffSynth-Studio's ``prompt`` column) and a data audit listing
    ``original_video``, ``video``, ``prompt``. Set ``pairs.base_uri`` to the ``videos/`` root
    when the CSVs do not sit in it.

    Rule (SAMA.md §4): the loader drops the first 4 frames of both source and target.
    """
    return PairPreset(
        name="openve-3m",
        corpus="OpenVE-3M",
        format="csv",
        columns={"source": "original_video", "target": "video", "instruction": "prompt"},
        media_type="video",
        drop_first_frames=4,
        manifest_hint="OpenVE-3M/<category>.csv (a glob of the category CSVs works)",
        assumed=("original_video", "video", "prompt", "paths relative to videos/"),
        sources=(
            "https://github.com/OpenVE-Team/OpenVE-3M (README: no field list)",
            "https://huggingface.co/datasets/Lewandofski/OpenVE-3M",
            "ThinkV2V run_train/*.sh: --data_file_keys video,original_video",
        ),
        aliases=("openve", "openve3m"),
    )


@_preset
def reco_data() -> PairPreset:
    """ReCo-Data (HiDream-ai/ReCo-Data; arXiv 2512.17650): add / remove / replace / style.

    Layout (github.com/HiDream-ai/ReCo README, "Directory Structure"): ``ReCo-Data/<task>/
    <task>_data_configs.json`` next to ``src_videos/`` and ``tar_videos/``. Each JSON file is a
    list of objects; the official loader (``scripts/reco_data_test_single.py``) reads
    ``src_video``, ``tar_video`` and the instruction ``instruction_final_refine``, and joins the
    paths to the ``ReCo-Data`` root (``--video_folder ./ReCo-Data``), i.e. one folder above the
    JSON file: base ``..``. Point ``pairs.uri`` at ``ReCo-Data/*/*_data_configs.json``.
    """
    return PairPreset(
        name="reco-data",
        corpus="ReCo-Data",
        format="json",
        columns={
            "source": "src_video",
            "target": "tar_video",
            "instruction": "instruction_final_refine",
        },
        media_type="video",
        base="..",
        manifest_hint="ReCo-Data/*/*_data_configs.json",
        sources=(
            "https://github.com/HiDream-ai/ReCo (README: ReCo-Data directory structure)",
            "ReCo scripts/reco_data_test_single.py: item['src_video'], item['tar_video'], "
            "item['instruction_final_refine'], os.path.join(video_folder, ...)",
            "https://huggingface.co/datasets/HiDream-ai/ReCo-Data",
        ),
        aliases=("reco",),
    )


@_preset
def ditto_1m() -> PairPreset:
    """Ditto-1M (QingyanBai/Ditto-1M; arXiv 2510.15742), the DiffSynth-Studio training CSVs.

    Layout (dataset card, "Dataset Structure"): ``Ditto-1M/csvs_for_DiffSynth/*.csv`` beside
    ``Ditto-1M/videos/{source,local,global_style1,...}``; the official training script passes
    ``--dataset_base_path Ditto-1M/videos --data_file_keys "video,vace_video"``: ``vace_video``
    is the source (VACE conditioning), ``video`` the edited target, so paths resolve against
    ``../videos`` from the CSV folder. ASSUMED: the instruction column ``prompt`` (DiffSynth-
    Studio's metadata convention; the card does not list the CSV header). SAMA used only the
    style subset (3.9k pairs): pick the global-style CSV. For the ``training_metadata`` JSON
    files use the ``ditto-1m-metadata`` preset.
    """
    return PairPreset(
        name="ditto-1m",
        corpus="Ditto-1M",
        format="csv",
        columns={"source": "vace_video", "target": "video", "instruction": "prompt"},
        media_type="video",
        base="../videos",
        manifest_hint="Ditto-1M/csvs_for_DiffSynth/<subset>.csv",
        assumed=("prompt",),
        sources=(
            "https://huggingface.co/datasets/QingyanBai/Ditto-1M (card: Dataset Structure)",
            "https://github.com/EzioBy/Ditto train script: --dataset_base_path "
            "Ditto-1M/videos --data_file_keys video,vace_video",
        ),
        aliases=("ditto",),
    )


@_preset
def ditto_1m_metadata() -> PairPreset:
    """Ditto-1M ``training_metadata/*.json``: ``source_path``, ``instruction``, ``edited_path``.

    The field names are documented on the dataset card ("Training Metadata: each metadata json
    file contains triplet items of source_path, instruction, edited_path"). ASSUMED: the file
    shape (read as a JSON list, an ``{id: item}`` map or JSON lines) and the path base, taken
    as the ``Ditto-1M`` root (one folder above ``training_metadata/``); set ``pairs.base_uri``
    if your paths resolve elsewhere.
    """
    return PairPreset(
        name="ditto-1m-metadata",
        corpus="Ditto-1M",
        format="json",
        columns={"source": "source_path", "target": "edited_path", "instruction": "instruction"},
        media_type="video",
        base="..",
        manifest_hint="Ditto-1M/training_metadata/*.json",
        assumed=("file shape", "paths relative to the Ditto-1M root"),
        sources=("https://huggingface.co/datasets/QingyanBai/Ditto-1M (card: Training Metadata)",),
    )


@_preset
def nhr_edit() -> PairPreset:
    """NHR-Edit (iitolstykh/NHR-Edit; arXiv 2507.14119): 720k image edit triplets.

    Layout (dataset card, "Dataset Structure"): ``train/images/<NN>/image_XXX_original.jpg``,
    ``image_XXX_edited_Y.jpg`` and ``train/metadata.jsonl``, one triplet per line. ASSUMED: the
    field names ``source_file_name``, ``edited_file_name``, ``edit_instruction``, ``sample_id``
    (the card's field table was not retrievable here; these are what published loaders of the
    JSONL read, alongside ``category``, ``kind``, ``style``, ``img_width``/``img_height``, kept as
    metadata) and paths relative to ``train/``. The Hub's Parquet conversion embeds the image
    bytes; this preset reads the JSONL + image files.
    """
    return PairPreset(
        name="nhr-edit",
        corpus="NHR-Edit",
        format="jsonl",
        columns={
            "source": "source_file_name",
            "target": "edited_file_name",
            "instruction": "edit_instruction",
            "id": "sample_id",
        },
        media_type="image",
        manifest_hint="NHR-Edit/train/metadata.jsonl",
        assumed=(
            "source_file_name",
            "edited_file_name",
            "edit_instruction",
            "sample_id",
            "paths relative to train/",
        ),
        sources=(
            "https://huggingface.co/datasets/iitolstykh/NHR-Edit (card: Dataset Structure)",
            "third-party NHR-Edit loader reading train/metadata.jsonl fields",
        ),
        aliases=("nhr",),
    )


@_preset
def pico_banana_400k() -> PairPreset:
    """Pico-Banana-400K (github.com/apple/pico-banana-400k; arXiv 2510.19808), single-turn SFT.

    Layout: ``sft.jsonl`` on Apple's CDN; each line has ``open_image_input_url`` (the Open
    Images source on Flickr), the long instruction ``text``, ``summarized_text`` (short),
    ``edit_type`` and ``output_image`` (e.g. ``images/positive-edit/1.png``, relative to
    ``https://ml-site.cdn-apple.com/datasets/pico-banana-300k/nb/``). The repo's
    ``map_openimage_url_to_local.py`` adds ``local_input_image`` (a local Open Images path), which
    this preset prefers over the URL. ``output_image`` resolves against the manifest's folder
    (a mirror of the CDN tree); set ``pairs.base_uri`` to the CDN prefix to read it remotely.
    ASSUMED: ``text``/``output_image``/``edit_type`` (the README shows only ``instruction`` in its
    example; these names come from loaders of ``sft.jsonl``); ``open_image_input_url`` and
    ``local_input_image`` are in the official mapping script.
    """
    return PairPreset(
        name="pico-banana-400k",
        corpus="Pico-Banana-400K",
        format="jsonl",
        columns={
            "source": "local_input_image|open_image_input_url",
            "target": "output_image",
            "instruction": "text",
        },
        media_type="image",
        base_uri_hint="https://ml-site.cdn-apple.com/datasets/pico-banana-300k/nb/",
        manifest_hint="sft.jsonl (after map_openimage_url_to_local.py for local sources)",
        assumed=("text", "output_image"),
        sources=(
            "https://github.com/apple/pico-banana-400k (README: download guide)",
            "apple/pico-banana-400k map_openimage_url_to_local.py: open_image_input_url, "
            "local_input_image",
        ),
        aliases=("pico-banana", "picobanana"),
    )


@_preset
def gpt_image_edit() -> PairPreset:
    """GPT-Image-Edit-1.5M (UCSC-VLAA/GPT-Image-Edit-1.5M; arXiv 2507.21033).

    Layout (github.com/wyhlovecpp/GPT-Image-Edit README, "Data preparation"): images from the
    dataset repo, annotations in ``UCSC-VLAA/gpt-image-edit-training/training_json/*.json``
    (UniWorld format), paired per subset with an image root in ``data.txt`` (e.g.
    ``data/gpt-edit/hqedit/edit,training_json/hqedit_gpt_edit.json``). Each JSON item has
    ``image`` (list: inputs first, the edited output last, relative to that root) and
    ``conversations``; the loader (``univa/dataset/qwen2vl_dataset.py``) takes the human turn
    with ``<image>`` and newlines removed as the instruction. The image root is not next to the
    JSON, so ``pairs.base_uri`` is required (one subset per manifest).
    """
    return PairPreset(
        name="gpt-image-edit",
        corpus="GPT-Image-Edit-1.5M",
        format="json",
        columns={
            "source": "image[0]",
            "target": "image[-1]",
            "instruction": "conversations[from=human].value",
        },
        media_type="image",
        requires_base_uri=True,
        base_uri_hint="pairs.base_uri=<GPT-Image-Edit-1.5M>/gpt-edit/hqedit/edit",
        instruction_strip=("<image>",),
        manifest_hint="training_json/<subset>.json",
        sources=(
            "https://github.com/wyhlovecpp/GPT-Image-Edit (README: data.txt)",
            "GPT-Image-Edit univa/dataset/qwen2vl_dataset.py: line['image'], "
            "data['conversations'], prompt.replace('<image>', '')",
            "https://huggingface.co/datasets/UCSC-VLAA/GPT-Image-Edit-1.5M",
        ),
        aliases=("gpt-image-edit-1.5m", "gpt-edit"),
    )


@_preset
def x2edit() -> PairPreset:
    """X2Edit (OPPOer/X2Edit-Dataset; arXiv 2508.07607), WebDataset tar shards.

    Layout: ``X2Edit-data/<generator>/<n>/<00000>.tar`` in WebDataset format (dataset card,
    "Unified Directory Structure"; repo README: "We organize the dataset using the WebDataset
    format"). The official loader (``src/custom_dataset_512.py``) reads per sample the source
    ``1.0.jpg`` (older shards: ``.1.jpg``), the target ``2.jpg`` and a ``json`` with
    ``instruction`` (``instruction_zh``, ``task`` and judge scores beside it; kept as metadata).
    Members become ``tar://<member>::<shard>`` URIs. Listing reads each shard once; for large
    builds extract the shards first and use a generic manifest.
    """
    return PairPreset(
        name="x2edit",
        corpus="X2Edit",
        format="webdataset",
        columns={
            "source": "1.0.jpg|.1.0.jpg|1.jpg|.1.jpg",
            "target": "2.jpg|.2.jpg",
            "instruction": "json.instruction|json.instruction_en|json.caption_en",
            "id": "__key__",
        },
        media_type="image",
        manifest_hint="X2Edit-data/<generator>/*/*.tar",
        sources=(
            "https://github.com/OPPO-Mente-Lab/X2Edit (README; src/custom_dataset_512.py: "
            "sample['1.0.jpg'], sample['2.jpg'], sample['json']['instruction'])",
            "https://huggingface.co/datasets/OPPOer/X2Edit-Dataset",
        ),
    )


def list_presets() -> list[str]:
    """Names of the known presets, sorted."""
    return sorted(_PRESETS)


def get_preset(name: str) -> PairPreset:
    """The preset called ``name`` (or one of its aliases; case and ``_`` vs ``-`` ignored)."""
    key = name.strip().lower().replace("_", "-")
    for preset in _PRESETS.values():
        if key == preset.name or key in preset.aliases:
            return preset
    raise ConfigError(f"unknown pairs preset {name!r}; known presets: {list_presets()}")
