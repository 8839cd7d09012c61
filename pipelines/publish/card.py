"""The dataset card (``README.md``) of a published dataset, generated, never hand-written.

Everything comes from declarations and from the data: the column tables from the record specs
(``RecordSpec.card_table``), the encoders and policies from the shards' provenance, the counts
and curation from validation (filter, clean-clip guard, judge and salvage rows by kind; the
``dedup/v1`` table's counts, threshold and method), the build stats from ``summary.json``, the
licence from the build config. The Hub YAML front matter declares one config per record kind
(``clips`` is the default, ``errors`` and ``dedup`` are their own configs) pointing at the data
files, and each
config's features (``dataset_info``, from the spec: ``preview`` is an ``Image``), so the Hub
viewer and ``datasets`` show the rows as they are, previews as pictures. The build config is
shown redacted (``sama.redact``: no storage options, tokens or URL credentials).
"""

from __future__ import annotations

import json
import re

import yaml

from datasets_spec import DEDUP_V1, SPECS
from pipelines.dataset import curation
from pipelines.dataset.layout import KINDS, build_stats, num_inputs
from pipelines.dataset.validate import ValidationReport
from sama.redact import redact

CONFIGS = (*KINDS, "dedup")  # Hub configs, in card order: the record kinds, then the dedup table
TASKS = {"clips": ["text-to-video"], "pairs": ["video-to-video", "image-to-image"]}
TAGS = ["sama", "video-editing", "wan2.1", "latents", "semantic-anchoring", "motion-alignment"]
PROVENANCE_SECTIONS = (
    "sama_version",
    "vae",
    "siglip",
    "text_encoder",
    "latent_norm",
    "anchor_policy",
    "frame_policy",
    "resolution_policy",
)
# Licence ids the Hub knows (hub-docs repositories-licenses.md); mostly lower-cased SPDX ids.
# fmt: off
HUB_LICENSES = frozenset((
    "apache-2.0", "mit", "openrail", "bigscience-openrail-m", "creativeml-openrail-m",
    "bigscience-bloom-rail-1.0", "bigcode-openrail-m", "afl-3.0", "artistic-2.0", "bsl-1.0",
    "bsd", "bsd-2-clause", "bsd-3-clause", "bsd-3-clause-clear", "c-uda", "cc", "cc0-1.0",
    "cc-by-2.0", "cc-by-2.5", "cc-by-3.0", "cc-by-4.0", "cc-by-sa-3.0", "cc-by-sa-4.0",
    "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nd-4.0", "cc-by-nc-nd-3.0",
    "cc-by-nc-nd-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0",
    "cdla-sharing-1.0", "cdla-permissive-1.0", "cdla-permissive-2.0", "wtfpl", "ecl-2.0",
    "epl-1.0", "epl-2.0", "etalab-2.0", "eupl-1.1", "agpl-3.0", "gfdl", "gpl", "gpl-2.0",
    "gpl-3.0", "lgpl", "lgpl-2.1", "lgpl-3.0", "isc", "lppl-1.3c", "ms-pl", "mpl-2.0", "odc-by",
    "odbl", "openrail++", "osl-3.0", "postgresql", "ofl-1.1", "ncsa", "unlicense", "zlib",
    "pddl", "lgpl-lr", "deepfloyd-if-license", "llama2", "gemma", "unknown", "other",
))
# fmt: on
CITATION = """@article{sama2026,
  title   = {SAMA: Factorized Semantic Anchoring and Motion Alignment for Instruction-Guided
             Video Editing},
  journal = {arXiv preprint arXiv:2603.19228},
  year    = {2026}
}"""


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` bucket for ``n`` rows."""
    bounds = [
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
        (100_000_000, "10M<n<100M"),
        (1_000_000_000, "100M<n<1B"),
    ]
    return next((name for bound, name in bounds if n < bound), "n>1T")


def license_fields(license: str | None, link: str | None = None) -> dict[str, str]:
    """Card metadata for a licence: a Hub id as is (``CC-BY-4.0`` -> ``cc-by-4.0``); any other
    name as ``license: other`` + ``license_name`` (a slug) + ``license_link`` when known; no
    licence -> ``unknown``."""
    if not license:
        return {"license": "unknown"}
    if license.strip().lower() in HUB_LICENSES:
        return {"license": license.strip().lower()}
    slug = re.sub(r"[^a-z0-9.]+", "-", license.strip().lower()).strip("-") or "custom"
    out = {"license": "other", "license_name": slug}
    if link:
        out["license_link"] = link
    return out


def dataset_info(kind_specs: dict[str, str]) -> list[dict]:
    """``dataset_info`` entries (config name + features) for the card YAML, from the specs
    (imports ``datasets``: the ``hub`` extra)."""
    try:
        from datasets import DatasetInfo
        from datasets.info import DatasetInfosDict
        from huggingface_hub import DatasetCardData
    except ImportError as e:
        raise ImportError("the dataset card needs datasets: pip install 'sama[hub]'") from e
    infos = DatasetInfosDict(
        {k: DatasetInfo(features=SPECS[s].features()) for k, s in kind_specs.items()}
    )
    card = DatasetCardData()
    infos.to_dataset_card_data(card)
    info = card.to_dict()["dataset_info"]
    return info if isinstance(info, list) else [{"config_name": next(iter(kind_specs)), **info}]


def front_matter(
    data_files: dict[str, str],
    license: dict[str, str],
    rows: int,
    pretty_name: str,
    kind_specs: dict[str, str] | None = None,
) -> dict:
    """Hub metadata: licence, tasks, tags, size, one config per record kind and, for kinds of
    one spec version (``kind_specs``), its features."""
    kinds = [k for k in CONFIGS if k in data_files]
    default = "clips" if "clips" in kinds else kinds[0]
    configs = []
    for k in kinds:
        cfg: dict = {"config_name": k}
        if k == default:
            cfg["default"] = True
        cfg["data_files"] = [{"split": "train", "path": data_files[k]}]
        configs.append(cfg)
    tasks = [t for k in kinds for t in TASKS.get(k, [])]
    meta = {
        **license,
        "pretty_name": pretty_name,
        "task_categories": list(dict.fromkeys(tasks)) or ["text-to-video"],
        "tags": TAGS,
        "size_categories": [size_category(rows)],
        "configs": configs,
    }
    if kind_specs:
        meta["dataset_info"] = dataset_info({k: kind_specs[k] for k in kinds if k in kind_specs})
    return meta


def kind_specs(validation: ValidationReport, data_files: dict[str, str]) -> dict[str, str]:
    """The one spec version of each published kind (kinds mixing versions are left out)."""
    out = {"dedup": DEDUP_V1.id} if "dedup" in data_files and validation.dedup else {}
    for k in KINDS:
        if k not in data_files:
            continue
        specs = {s.spec_id for s in validation.shards if s.kind == k and s.spec_id}
        if len(specs) == 1:
            out[k] = specs.pop()
    return out


def render_card(
    validation: ValidationReport,
    data_files: dict[str, str],
    *,
    summary: dict | None = None,
    build_config: dict | None = None,
    license: str | None = None,
    license_link: str | None = None,
    repo_id: str | None = None,
    pretty_name: str | None = None,
) -> str:
    """README.md text: YAML front matter + the human-readable card."""
    name = pretty_name or (repo_id.split("/")[-1] if repo_id else "SAMA training data")
    total = sum(validation.rows.get(k, 0) for k in data_files)
    lic = license_fields(license, license_link)
    meta = front_matter(data_files, lic, total, name, kind_specs(validation, data_files))
    parts = [
        "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n",
        f"# {name}\n",
        "Training data for [SAMA](https://arxiv.org/abs/2603.19228) (instruction-guided video "
        "editing on Wan2.1), built with `sama`. Rows hold precomputed Wan VAE latents and "
        "SigLIP anchor tokens, not pixels: tensors are raw little-endian bytes with "
        "`<name>_shape` and `<name>_dtype` columns (bfloat16 is stored as its 16-bit pattern).\n",
        _configs_section(validation, data_files, summary),
        _loading_section(repo_id, data_files),
        _provenance_section(validation.provenance()),
        _curation_section(validation, "dedup" in data_files),
        _stats_section(summary),
        _columns_section(validation, data_files),
        _config_section(build_config),
        _license_section(license, lic),
        "## Citation\n\n```bibtex\n" + CITATION + "\n```\n",
    ]
    return "\n".join(parts)


def _configs_section(v: ValidationReport, data_files: dict[str, str], summary: dict | None) -> str:
    lines = ["## Configs\n", "| config | spec | rows | shards | files |", "|---|---|---|---|---|"]
    for k in KINDS:
        if k not in data_files:
            continue
        specs = sorted({s.spec_id for s in v.shards if s.kind == k and s.spec_id})
        n_shards = sum(1 for s in v.shards if s.kind == k)
        lines.append(
            f"| `{k}` | {', '.join(specs)} | {v.rows.get(k, 0)} | {n_shards} | `{data_files[k]}` |"
        )
    if "dedup" in data_files and v.dedup:
        d = v.dedup
        lines.append(f"| `dedup` | {DEDUP_V1.id} | {d['duplicates']} | {d['files']} | "
                     f"`{data_files['dedup']}` |")  # fmt: skip
    n = num_inputs(summary)
    if n is not None:
        lines.append(
            f"\nEvery one of the {n} inputs of the build is accounted for: it became "
            "clips or pairs, or a row of `errors` saying why not."
        )
    return "\n".join(lines) + "\n"


def _loading_section(repo_id: str | None, data_files: dict[str, str]) -> str:
    repo = repo_id or "<repo_id>"
    first = "clips" if "clips" in data_files else next(iter(data_files))
    tensor = "latents" if first == "clips" else "target_latents"
    return f"""## Loading

```python
import numpy as np
from datasets import load_dataset

ds = load_dataset("{repo}", "{first}", split="train")
row = ds[0]
bits = np.frombuffer(row["{tensor}"], dtype="<u2").reshape(row["{tensor}_shape"])  # bfloat16
{tensor} = (bits.astype(np.uint32) << 16).view(np.float32)  # exact widening to float32
```

With `sama` installed: `datasets_spec.read_tensor(row, "{tensor}")`.
"""


def _value(v) -> str:
    text = json.dumps(v, sort_keys=True, default=str) if not isinstance(v, str) else v
    return text.replace("|", "\\|")


def _provenance_section(prov: dict | None) -> str:
    if not prov:
        return "## Provenance\n\nUnknown (the shards carry no provenance).\n"
    lines = [
        "## Provenance\n",
        "Encoders and policies recorded in every shard's Parquet metadata (`sama.provenance`):\n",
        "| what | value |",
        "|---|---|",
    ]
    for key in PROVENANCE_SECTIONS:
        if key not in prov:
            continue
        val = prov[key]
        if isinstance(val, dict):
            lines += [f"| `{key}.{k}` | `{_value(x)}` |" for k, x in val.items()]
        else:
            lines.append(f"| `{key}` | `{_value(val)}` |")
    return "\n".join(lines) + "\n"


def _stats_section(summary: dict | None) -> str:
    stats = build_stats(summary)
    if not stats:
        return ""
    lines = ["## Build stats\n", "| stat | value |", "|---|---|"]
    lines += [f"| `{k}` | {_value(v)} |" for k, v in stats.items()]
    return "\n".join(lines) + "\n"


def _columns_section(v: ValidationReport, data_files: dict[str, str]) -> str:
    out = ["## Columns\n"]
    for k in KINDS:
        if k not in data_files:
            continue
        for spec_id in sorted({s.spec_id for s in v.shards if s.kind == k and s.spec_id}):
            spec = SPECS[spec_id]
            out.append(
                f"### `{k}` ({spec.id}, key `{spec.key}`)\n\n{spec.description}\n\n"
                f"{spec.card_table()}\n"
            )
    if "dedup" in data_files and v.dedup:
        out.append(f"### `dedup` ({DEDUP_V1.id}, key `{DEDUP_V1.key}`)\n\n"
                   f"{DEDUP_V1.description}\n\n{DEDUP_V1.card_table()}\n")  # fmt: skip
    return "\n".join(out)


def _config_section(build_config: dict | None) -> str:
    if not build_config:
        return ""
    text = yaml.safe_dump(redact(build_config), sort_keys=False)
    return (
        "## Build config\n\n<details><summary>build_config.yaml (resolved; storage options, "
        "tokens and URL credentials redacted)</summary>\n\n"
        f"```yaml\n{text}```\n\n</details>\n"
    )


def _license_section(license: str | None, fields: dict[str, str]) -> str:
    if not license:
        return "## Licence\n\nNot set: add `license:` to the build config (or `--license`).\n"
    if fields["license"] != "other":
        return f"## Licence\n\n`{fields['license']}` (from the build config).\n"
    link = fields.get("license_link")
    where = f" ({link})" if link else " (add `license_link:` to the build config)"
    return f"## Licence\n\n{license}{where}: not a licence id the Hub knows.\n"


def _curation_section(v: ValidationReport, dedup_published: bool) -> str:
    """What curation removed or noted: the dedup table (counts, threshold, method) and the
    error rows that are curation, by kind (``pipelines/dataset/curation.py``); none when
    neither is there."""
    cur, failures = v.split_errors()
    lines = ["## Curation\n"]
    d = v.dedup
    if d:
        where = "the `dedup` config" if dedup_published else "the dedup table"
        lines += [
            f"**Near-duplicates** (`sama dedup`, {where}, `{DEDUP_V1.id}`): {d['duplicates']} "
            f"of {d['clips_compared']} clips are marked as near-duplicates of {d['groups']} "
            f"kept clips. Their rows are still in `clips`: skip the `clip_id`s of `dedup` (the "
            "`sama` trainer does so by default, `data.skip_duplicates`).\n",
            "| what | value |",
            "|---|---|",
            f"| threshold (cosine of the SigLIP global anchor tokens) | {_value(d['threshold'])} |",
            f"| method | {_value(d['method'])} |",
            f"| keep rule | {_value(d['keep_rule'])} |",
            "",
        ]
    if cur:
        lines += [
            "**Filtered, guarded off and salvaged** (rows of `errors`, apart from the "
            f"{sum(failures.values())} failures):\n",
            "| kind | what | rows |",
            "|---|---|---|",
            *[f"| `{k}` | {curation.CURATION_KINDS[k]} | {n} |" for k, n in cur.items()],
            "",
        ]
    return "\n".join(lines) if len(lines) > 1 else ""
