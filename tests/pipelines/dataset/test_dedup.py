"""``sama dedup`` end to end on a dataset the real build made (``corpus.py``): re-encodes of one
video are marked as duplicates of one kept clip on Ray, other videos are not; no shard is
rewritten; a re-run needs ``--overwrite``; the lease is respected and held; bad roots are clear
errors; ``validate``, ``report`` and the card show the table and the curation rows."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.cli_tools import dedup_main
from pipelines.dataset import dedup as dedup_mod
from pipelines.dataset.dedup_table import read_dedup_table
from pipelines.dataset.validate import validate
from pipelines.engine.lease import hold
from pipelines.engine.root import LEASE_FILE
from pipelines.publish.hub import plan_publish, write_folder
from pipelines.report.page import build_report
from tests.pipelines.dataset.corpus import COPIES, CURATED, OTHERS, built_root, clip_id
from tests.pipelines.helpers import local_ray
from tests.pipelines.test_report import parse

KEPT = clip_id("box")
MARKED = {clip_id("box_crf35"): KEPT, clip_id("box_small"): KEPT}


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.parquet"))
        if "dedup" not in p.parts
    }


@pytest.fixture(scope="module")
def deduped(tmp_path_factory):
    """A copy of the built root, deduplicated by ``sama dedup`` on a local Ray (2 CPUs)."""
    root = tmp_path_factory.mktemp("deduped") / "dataset"
    shutil.copytree(built_root(tmp_path_factory), root)
    before = _digests(root)
    out = io.StringIO()
    with local_ray(), contextlib.redirect_stdout(out):
        rc = dedup_main([str(root)])
    return {"root": root, "rc": rc, "stdout": out.getvalue(), "before": before}


def test_reencodes_are_marked_on_ray_and_no_shard_is_rewritten(deduped):
    root = deduped["root"]
    assert deduped["rc"] == 0, deduped["stdout"]
    table = read_dedup_table(str(root))
    assert table is not None and table.ok, table and table.problems
    assert dict(zip(table.clip_id, table.duplicate_of, strict=True)) == MARKED
    assert all(s >= 0.99 for s in table.similarity)  # re-encodes: >= 0.994 on this footage
    prov = table.provenance
    assert prov["threshold"] == 0.95 and "IndexFlatIP" in prov["method"]
    assert (
        prov["clips"]["rows"] == 8 and prov["groups"] == 1 and "largest source" in prov["keep_rule"]
    )
    assert [p.parent.name for p in root.glob("dedup/*.parquet")] == ["dedup"]
    assert _digests(root) == deduped["before"]  # shards and error shards byte for byte
    out = deduped["stdout"]
    assert (
        "8 clips in 1 shards, 2 marked as near-duplicates of 1 kept clips (threshold 0.95)" in out
    )
    assert "method: faiss" in out and "keep rule:" in out and not (root / LEASE_FILE).exists()


def test_rerun_needs_overwrite_then_replaces_the_table(deduped, tmp_path, capsys):
    root = tmp_path / "dataset"
    shutil.copytree(deduped["root"], root)
    old = sorted(root.glob("dedup/*.parquet"))
    assert dedup_main([str(root), "--executor", "local"]) == 1
    assert "already has a dedup table" in capsys.readouterr().err and old == sorted(
        root.glob("dedup/*.parquet")
    )
    assert (
        dedup_main([str(root), "--executor", "local", "--overwrite", "--threshold", "0.9999"]) == 0
    )
    new = sorted(root.glob("dedup/*.parquet"))
    assert len(new) == 1 and new != old  # replaced, not added to
    table = read_dedup_table(str(root))
    assert table.clip_id == [] and table.threshold == 0.9999  # an empty table still says how
    report = validate(str(root))
    assert report.ok and report.dedup["duplicates"] == 0
    assert dedup_main([str(root), "--executor", "local", "--overwrite"]) == 0  # the same as Ray's
    assert (
        dict(
            zip(
                *(read_dedup_table(str(root)).clip_id, read_dedup_table(str(root)).duplicate_of),
                strict=True,
            )
        )
        == MARKED
    )


def test_refuses_while_a_build_holds_the_lease_and_holds_it_while_writing(
    deduped, tmp_path, capsys, monkeypatch
):
    import fsspec

    root = tmp_path / "dataset"
    shutil.copytree(deduped["root"], root)
    fs = fsspec.filesystem("file")
    with hold(fs, str(root), "clips", 60, str(root), False):
        assert dedup_main([str(root), "--executor", "local", "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert "is being written by a clips build" in err
    seen = []
    write = dedup_mod._write

    def spy(fs, path, rows, prov):
        seen.append(json.loads((root / LEASE_FILE).read_text())["kind"])
        return write(fs, path, rows, prov)

    monkeypatch.setattr(dedup_mod, "_write", spy)
    assert dedup_main([str(root), "--executor", "local", "--overwrite"]) == 0
    assert seen == ["dedup"] and not (root / LEASE_FILE).exists()  # held while writing, then gone


def test_clear_errors_for_roots_it_cannot_compare(deduped, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert dedup_main([str(empty), "--executor", "local"]) == 1
    assert "no clip shards under" in capsys.readouterr().err
    root = tmp_path / "no_tokens"
    shutil.copytree(deduped["root"], root)
    shutil.rmtree(root / "dedup")
    (shard,) = root.glob("clips/*.parquet")
    t = pq.read_table(shard)
    keep = [c for c in t.column_names if not c.startswith("anchor_tokens")]
    pq.write_table(
        t.select(keep).replace_schema_metadata(t.schema.metadata), root / "clips" / "z.parquet"
    )
    assert dedup_main([str(root), "--executor", "local"]) == 1
    err = capsys.readouterr().err
    assert "1 of 2 clip shard(s) cannot be compared, nothing was written" in err
    assert "z.parquet: has no anchor_tokens column" in err and not (root / "dedup").exists()


def test_validate_passes_and_reports_duplicates_and_curation(deduped):
    report = validate(str(deduped["root"]))
    assert report.ok, report.format()
    assert report.dedup["duplicates"] == 2 and report.dedup["groups"] == 1
    curation, failures = report.split_errors()
    assert curation == {"filtered_dark": 1, "filtered_static": 1, "salvaged": 1} and failures == {}
    text = report.format()
    assert (
        ", 8 clips, 0 pairs, 3 errors, 10 inputs, 2 marked near-duplicates" in text.splitlines()[0]
    )
    assert "curation 1 filtered_dark, 1 filtered_static, 1 salvaged; failures none" in text
    assert (
        "dedup: 2 clips marked as near-duplicates of 1 kept clips (dedup/v1, threshold 0.95)"
        in text
    )
    assert report.to_dict()["dedup"]["duplicates"] == 2


def _rewrite(root: Path, rows: list[dict] | None = None, **prov) -> None:
    (path,) = root.glob("dedup/*.parquet")
    t = pq.read_table(path)
    meta = dict(t.schema.metadata)
    p = {**json.loads(meta[b"sama.provenance"]), **prov}
    p = {k: v for k, v in p.items() if v is not None}
    meta[b"sama.provenance"] = json.dumps(p).encode()
    if rows is not None:
        t = pa.Table.from_pylist(rows, schema=t.schema)
    pq.write_table(t.replace_schema_metadata(meta), path)


@pytest.mark.parametrize(
    ("rows", "prov", "needle", "level"),
    [
        ([(clip_id("cup"), clip_id("box_crf35")), (clip_id("box_crf35"), KEPT)], {},
         "is itself marked as a duplicate", "error"),
        ([("nope-s000-c00", KEPT)], {}, "clip_id 'nope-s000-c00' names no clip of the root", "error"),
        ([(clip_id("cup"), KEPT)] * 2, {}, "is marked 2 times", "error"),
        (None, {"threshold": None}, "provenance is missing ['threshold']", "error"),
        (None, {"clips": {"rows": 5}}, "computed over 5 clips, the root now holds 8", "warning"),
    ],
)  # fmt: skip
def test_validate_refuses_broken_dedup_tables(deduped, tmp_path, rows, prov, needle, level):
    root = tmp_path / "dataset"
    shutil.copytree(deduped["root"], root)
    table = (
        None
        if rows is None
        else [{"clip_id": a, "duplicate_of": b, "similarity": 0.99} for a, b in rows]
    )
    _rewrite(root, table, **prov)
    report = validate(str(root))
    hits = [p for p in report.problems if needle in p.message]
    assert hits and hits[0].level == level, report.format()
    assert report.ok == (level == "warning")


def test_report_shows_curation_apart_and_example_pairs(deduped):
    html = build_report(str(deduped["root"]), samples=0)
    page = parse(html)
    assert page.sections[page.sections.index("errors") + 1 : page.sections.index("errors") + 3] == [
        "curation",
        "dedup",
    ]
    assert page.figures.count("dedup") == 2  # the two marked pairs
    dedup_html = html.split('<section id="dedup">')[1].split("</section>")[0]
    assert (
        dedup_html.count("<img") == 4 and "data:image/jpeg" in dedup_html
    )  # stored previews, side by side
    assert "cosine 0.99" in dedup_html and f"<b>{KEPT}</b> (kept)" in dedup_html
    cur = html.split('<section id="curation">')[1].split("</section>")[0]
    for kind in CURATED.values():
        assert kind in cur
    worst = html.split('<section id="errors">')[1].split("</section>")[0]
    assert "no errors" in worst  # the curation rows are no failures


def test_card_shows_the_counts_and_publish_uploads_the_table(deduped, tmp_path):
    plan = plan_publish(str(deduped["root"]), "me/tiny")
    paths = [f.repo_path for f in plan.files]
    assert [p for p in paths if p.startswith("data/dedup/")] == [
        f"data/dedup/{p.name}" for p in deduped["root"].glob("dedup/*.parquet")
    ]
    out = write_folder(plan, tmp_path / "repo")
    card = (out / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    configs = {c["config_name"]: c["data_files"][0]["path"] for c in meta["configs"]}
    assert configs["dedup"] == "data/dedup/*.parquet"
    features = {i["config_name"]: [f["name"] for f in i["features"]] for i in meta["dataset_info"]}
    assert features["dedup"] == ["clip_id", "duplicate_of", "similarity"]
    curation = card.split("## Curation")[1].split("\n## ")[0]
    assert "2 of 8 clips are marked as near-duplicates of 1 kept clips" in curation
    assert "| threshold (cosine of the SigLIP global anchor tokens) | 0.95 |" in curation
    assert "| method | faiss-" in curation
    for kind in ("filtered_dark", "filtered_static", "salvaged"):
        assert f"| `{kind}` |" in curation
    published = validate(str(out))  # the published layout: data/dedup/ is found and checked
    assert published.dedup["duplicates"] == 2 and not published.errors


def test_the_corpus_is_what_the_tests_assume(deduped):
    """Every copy and other video became one clip; the curated inputs are where they should be."""
    clips = pq.read_table(next(deduped["root"].glob("clips/*.parquet")), columns=["clip_id"])
    assert sorted(clips.column(0).to_pylist()) == sorted(clip_id(v) for v in (*COPIES, *OTHERS))
