"""The dataset card (``README.md``) of a published dataset, generated, never hand-written.

Everything comes from declarations and from the data: the column tables from the record specs
(``RecordSpec.card_table``), the encoders and policies from the shards' provenance, the counts
from validation, the build stats from ``summary.json``, the licence from the build config. The
Hub YAML front matter declares one config per record kind (``clips`` is the default, ``errors``
is its own config) pointing at the data files, so the Hub viewer and ``datasets`` show them.
"""

from __future__ import annotations

import json

import yaml

from datasets_spec import SPECS
from pipelines.dataset.layout import KINDS, build_stats, num_inputs
from pipelines.dataset.validate import ValidationReport

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


def front_matter(
    data_files: dict[str, str], license: str | None, rows: int, pretty_name: str
) -> dict:
    """Hub metadata: licence, tasks, tags, size and one config per record kind."""
    kinds = [k for k in KINDS if k in data_files]
    default = "clips" if "clips" in kinds else kinds[0]
    configs = []
    for k in kinds:
        cfg: dict = {"config_name": k}
        if k == default:
            cfg["default"] = True
        cfg["data_files"] = [{"split": "train", "path": data_files[k]}]
        configs.append(cfg)
    tasks = [t for k in kinds for t in TASKS.get(k, [])]
    return {
        "license": license or "other",
        "pretty_name": pretty_name,
        "task_categories": list(dict.fromkeys(tasks)) or ["text-to-video"],
        "tags": TAGS,
        "size_categories": [size_category(rows)],
        "configs": configs,
    }


def render_card(
    validation: ValidationReport,
    data_files: dict[str, str],
    *,
    summary: dict | None = None,
    build_config: dict | None = None,
    license: str | None = None,
    repo_id: str | None = None,
    pretty_name: str | None = None,
) -> str:
    """README.md text: YAML front matter + the human-readable card."""
    name = pretty_name or (repo_id.split("/")[-1] if repo_id else "SAMA training data")
    total = sum(validation.rows.get(k, 0) for k in data_files)
    meta = front_matter(data_files, license, total, name)
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
        _stats_section(summary),
        _columns_section(validation, data_files),
        _config_section(build_config),
        "## Licence\n\n"
        + (
            f"`{license}` (from the build config).\n"
            if license
            else "Not set: add `license:` to the build config before publishing.\n"
        ),
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
    return "\n".join(out)


def _config_section(build_config: dict | None) -> str:
    if not build_config:
        return ""
    text = yaml.safe_dump(build_config, sort_keys=False)
    return (
        "## Build config\n\n<details><summary>build_config.yaml (resolved)</summary>\n\n"
        f"```yaml\n{text}```\n\n</details>\n"
    )
