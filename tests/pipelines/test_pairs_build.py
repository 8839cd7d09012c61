"""``sama build`` of edit pairs (``input.kind=pairs``) end to end (one local Ray for the module).

The generated pair set (``sama.pairs.demo``: videos and images, good pairs and one broken pair
per failure) is built into the root of a small clip build: every pair becomes a ``pairs/v1`` row
or an error row of the kind ``truth.json`` expects, shards load with ``datasets``, the combined
root validates and the clip build is untouched; a re-run skips finished pairs, a run that lost
its markers writes no duplicate; overwrite replaces only the pairs. The VLM judge runs end to end
on a tiny Qwen2.5-VL taught fixed answers for the pairs it will see (one passes, one is under
the video thresholds, one answers no scores), with build-time and trainer-time filtering.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datasets_spec import ERRORS_V1, PAIRS
from datasets_spec.provenance import REQUIRED, read_provenance
from pipelines.build import build
from pipelines.config import BuildConfig, load_build_config
from pipelines.dataset.validate import validate
from sama.errors import ConfigError
from sama.pairs.demo import make_pair_set
from sama.video.buckets import buckets_for, nearest_bucket
from tests.pipelines.helpers import demo_config, local_ray, tiny_models

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
MAX_FRAMES = 17  # configs/build_demo_pairs.yaml: pairs.align.max_frames
RESOLUTION = 64
PREFIX = "[Video edit] "


@pytest.fixture(scope="module")
def ray_address():
    with local_ray() as address:
        yield address


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return tiny_models(tmp_path_factory)


@pytest.fixture(scope="module")
def pair_set(tmp_path_factory) -> dict:
    return make_pair_set(tmp_path_factory.mktemp("pair_set"))


def pair_config(models: Path, manifest: str, out: str, *overrides: str) -> BuildConfig:
    return load_build_config(
        CONFIGS / "build_demo_pairs.yaml",
        [f"models_dir={models}", f"input.uri={manifest}", f"output.uri={out}",
         "engine.strict=true", *overrides],
    )  # fmt: skip


def _shards(root: Path, kind: str, prefix: str = "") -> list[Path]:
    return sorted(p for p in (root / kind).glob(f"{prefix}*.parquet") if not p.name.startswith("."))


def _table(root: Path, kind: str) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in _shards(root, kind)])


def _listed(root: Path, kind: str) -> list[str]:
    """The ids of a build's declared inputs table, in listing order."""
    column = {"clips": "video_id", "pairs": "pair_id"}[kind]
    parts = sorted((root / "_state" / kind / "inputs").glob("*.parquet"))
    return [i for p in parts for i in pq.read_table(p, columns=[column]).column(0).to_pylist()]


def _snapshot(root: Path, kind: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in _shards(root, kind)}


@pytest.fixture(scope="module")
def built(ray_address, models, pair_set, sample_set, tmp_path_factory) -> dict:
    """A small clip build (local), then the pair build (Ray) into the same root."""
    root = tmp_path_factory.mktemp("mixed") / "ds"
    clip_cfg = demo_config(models, sample_set["manifest"], str(root), "input.limit=2",
                           "engine.executor=local", "text.enabled=false")  # fmt: skip
    clip_summary = build(clip_cfg)
    clips_before = {
        "shards": _snapshot(root, "clips"),
        "errors": {p.name for p in _shards(root, "errors")},
        "fingerprint": (root / "_state" / "clips" / "fingerprint.json").read_bytes(),
    }
    cfg = pair_config(models, pair_set["manifest"], str(root))
    summary = build(cfg)
    return {"root": root, "cfg": cfg, "summary": summary, "clip_cfg": clip_cfg,
            "clip_summary": clip_summary, "clips_before": clips_before}  # fmt: skip


# ---- the pair build ------------------------------------------------------------------------


def test_every_pair_is_a_row_or_an_error_of_the_kind_truth_expects(built, pair_set):
    truth = json.loads(Path(pair_set["truth"]).read_text())["pairs"]
    s = built["summary"]
    assert _listed(built["root"], "pairs") == list(truth) and s["num_inputs_unaccounted"] == 0
    pairs = {r["pair_id"]: r for r in _table(built["root"], "pairs").to_pylist()}
    errors = {r["item_id"]: r for r in _table(built["root"], "errors").to_pylist()
              if r["record_kind"] == "pairs"}  # fmt: skip
    assert set(pairs) | set(errors) == set(truth) and not set(pairs) & set(errors)
    for pid, t in truth.items():
        if "error" in t:
            e = errors[pid]
            assert e["kind"] == t["error"], (pid, e["message"])
            where = e["stage"] if t["stage"] == "list_pairs" else e["message"].split(":")[0]
            assert where == t["stage"], (pid, e["stage"], e["message"])
            assert e["input_uri"].startswith(pair_set["manifest"] + "#")
            continue
        row, want = pairs[pid], t["expected"]
        n = min(want["num_frames"], MAX_FRAMES)
        bucket = nearest_bucket(*want["source_size"], buckets_for(RESOLUTION))
        assert (row["media_type"], row["num_frames"], row["start_frame"], row["fps"]) == (
            want["media_type"], n, 0, want["fps"])  # fmt: skip
        assert (row["bucket_width"], row["bucket_height"]) == bucket
        latent = [16, (n - 1) // 4 + 1, bucket[1] // 8, bucket[0] // 8]
        assert row["source_latents_shape"] == row["target_latents_shape"] == latent
        assert row["source_latents"] != row["target_latents"]  # the edit shows in the latents
        assert row["anchor_frame_indices"] == [0] and row["anchor_tokens_shape"][:2] == [1, 65]
        assert row["text_prompts"] == [PREFIX + row["instruction"]]
        assert row["text_lengths"][0] == row["text_embeds_shape"][0]
        assert row["source_uri"] == t["source_uri"] and row["judge_model"] is None
    assert s["pairs"] == 6 and s["pairs_by_media_type"] == {"image": 2, "video": 4}
    assert s["errors_by_kind"] == {"bad_manifest_row": 1, "mismatch": 4, "not_an_image": 1,
                                   "not_found": 1, "zero_byte": 1}  # fmt: skip


def test_shards_validate_load_with_datasets_and_carry_provenance(built):
    from datasets import load_dataset

    files = _shards(built["root"], "pairs")
    ds = load_dataset("parquet", data_files=[str(p) for p in files], split="train")
    assert ds.num_rows == 6 and set(ds.column_names) == set(PAIRS.column_names)
    for path in files:
        f = pq.ParquetFile(path)
        PAIRS.validate(f.read())
        prov = read_provenance(f.schema_arrow)
        assert set(REQUIRED) <= set(prov) and prov["spec"] == "pairs/v2"
        assert prov["build_kind"] == "pairs" and "black_latent" not in prov
        assert prov["text"]["prompt_policy"]["instruction_prefix"] == PREFIX
        assert prov["frame_policy"]["max_frames"] == MAX_FRAMES
        assert prov["judge"] == {"enabled": False}
        for g in range(f.num_row_groups):  # one latent shape per row group
            t = f.read_row_group(g, columns=["media_type", "num_frames", "bucket_width"])
            assert len(set(zip(*t.to_pydict().values(), strict=True))) == 1
    for path in _shards(built["root"], "errors", "part-pairs-"):
        t = pq.read_table(path)
        ERRORS_V1.validate(t)
        assert set(t.column("record_kind").to_pylist()) == {"pairs"}
    assert (built["root"] / "build_config_pairs.yaml").exists()


def test_the_combined_root_validates_and_the_clip_build_is_untouched(built):
    root, before = built["root"], built["clips_before"]
    report = validate(str(root))
    assert report.ok and not report.warnings, report.format()
    assert report.rows["clips"] > 0 and report.rows["pairs"] == 6
    assert _snapshot(root, "clips") == before["shards"]
    assert before["errors"] <= {p.name for p in _shards(root, "errors")}
    assert (root / "_state" / "clips" / "fingerprint.json").read_bytes() == before["fingerprint"]
    summary = json.loads((root / "summary.json").read_text())
    assert len(_listed(root, "clips")) == 2 and len(_listed(root, "pairs")) == 14
    assert summary["kinds"] == ["clips", "pairs"] and summary["num_inputs"] == 16
    assert summary["by_kind"]["clips"]["clips"] == built["clip_summary"]["clips"]


def test_rerun_skips_finished_pairs_and_a_clip_rerun_keeps_them(built):
    root = built["root"]
    files = sorted(p.name for p in root.rglob("*.parquet"))
    again = build(built["cfg"])
    assert again["run"]["processed_inputs"] == 0 and again["run"]["skipped_inputs"] == 14
    assert again["pairs"] == 6 and again["errors"] == 8
    clips_again = build(built["clip_cfg"])
    assert clips_again["run"]["processed_inputs"] == 0
    assert clips_again["errors_by_kind"] == built["clip_summary"]["errors_by_kind"]
    assert "mismatch" not in clips_again["errors_by_kind"]  # the pair build's errors are its own
    assert sorted(p.name for p in root.rglob("*.parquet")) == files
    summary = json.loads((root / "summary.json").read_text())
    assert summary["num_inputs"] == 16 and validate(str(root)).ok


def test_lost_markers_rebuild_without_duplicates_and_overwrite_keeps_the_clips(
    built, models, pair_set, tmp_path
):
    """A run killed after writing shards but before their sidecars: the shards no sidecar names
    are removed, the re-run makes those pairs again and writes none twice. Then overwrite with
    another config replaces the pairs only; resuming with another config is refused."""
    root = tmp_path / "copy"
    shutil.copytree(built["root"], root)
    for lost in ("index", "sidecars"):
        shutil.rmtree(root / "_state" / "pairs" / lost, ignore_errors=True)
    cfg = pair_config(models, pair_set["manifest"], str(root), "engine.executor=local")
    again = build(cfg)
    assert again["run"]["processed_inputs"] == 14 and again["run"]["pairs"] == 6
    assert again["pairs"] == 6 and validate(str(root)).ok
    clips = _snapshot(root, "clips")
    with pytest.raises(ConfigError, match=r"pairs\.align\.max_frames: 17 -> 9"):
        build(pair_config(models, pair_set["manifest"], str(root), "pairs.align.max_frames=9"))
    short = pair_config(models, pair_set["manifest"], str(root), "pairs.align.max_frames=9",
                        "output.if_exists=overwrite", "engine.executor=local",
                        "text.enabled=false")  # fmt: skip
    summary = build(short)
    assert summary["pairs"] == 6 and summary["run"]["resumed"] is False
    assert set(_table(root, "pairs").column("num_frames").to_pylist()) == {1, 9}
    assert _snapshot(root, "clips") == clips and validate(str(root)).ok
    assert json.loads((root / "summary.json").read_text())["num_inputs"] == 16


def test_manifest_scores_and_the_prompt_policy(models, pair_set, tmp_path):
    """Scores that come with the manifest are kept (``judge_model="manifest"``) when no judge
    runs; ``pairs.prefix_media=[video]`` leaves image instructions unprefixed."""
    rec = pair_set["pairs"]["image_recolor"]
    row = {
        "id": "scored",
        "source": rec["source_uri"],
        "target": rec["target_uri"],
        "instruction": rec["instruction"],
        "score_if": 9.5,
        "score_vq": 8,
        "score_cp": "7",
    }
    manifest = tmp_path / "scored.jsonl"
    manifest.write_text(json.dumps(row) + "\n")
    cfg = pair_config(models, str(manifest), str(tmp_path / "o"), "engine.executor=local",
                      "pairs.prefix_media=[video]", f"input.allowed_roots=[{pair_set['root']}]")  # fmt: skip
    assert build(cfg)["pairs"] == 1
    (got,) = _table(tmp_path / "o", "pairs").to_pylist()
    assert (got["score_if"], got["score_vq"], got["score_cp"], got["score_mc"]) == (9.5, 8, 7, None)
    assert got["judge_model"] == "manifest" and got["text_prompts"] == [rec["instruction"]]


def test_pair_config_errors():
    with pytest.raises(ConfigError, match="pairs.uri is not used"):
        load_build_config(None, ["input.kind=pairs", "input.uri=m.jsonl", "output.uri=o",
                                 "pairs.uri=x.jsonl"])  # fmt: skip
    with pytest.raises(ConfigError, match="unknown pairs preset"):
        load_build_config(None, ["input.kind=pairs", "input.uri=m.jsonl", "output.uri=o",
                                 "pairs.preset=nope"])  # fmt: skip
    with pytest.raises(ConfigError, match="judge.thresholds.video.motion_consistency"):
        load_build_config(None, ["input.uri=m", "output.uri=o",
                                 "judge.thresholds.video.motion_consistency=11"])  # fmt: skip


# ---- the VLM judge -------------------------------------------------------------------------

# what the taught judge answers for each pair (image thresholds 9/9/9; video 8/9/8/8)
ANSWERS = {
    "image_recolor": '{"instruction_following": 9, "visual_quality": 9, '
    '"content_preservation": 10}',
    "video_recolor": '{"instruction_following": 9, "visual_quality": 9, '
    '"content_preservation": 8, "motion_consistency": 6}',  # MC 6 < 8
    "image_add_portrait": "I cannot rate this edit.",  # no scores at all
}
JUDGE = ("judge.enabled=true", "judge.runs=1", "judge.vlm.do_sample=false",
         "judge.vlm.device=cpu", "judge.vlm.num_frames=2", "judge.vlm.max_new_tokens=48",
         "judge.image_prompt='Judge: {instruction}'",
         "judge.video_prompt='Judge the video: {instruction}'")  # fmt: skip


@pytest.fixture(scope="module")
def judge_setup(models, pair_set, tmp_path_factory) -> dict:
    """Three pairs of the set and a tiny Qwen2.5-VL taught ``ANSWERS`` for exactly the requests
    the build's judge will make (the same frames, through the same stages), saved and loaded
    back through the real loading code."""
    import torch

    from pipelines.engine.apply import apply_stage, to_rows
    from pipelines.engine.runner import plan
    from pipelines.pairs import judge_pairs as jp
    from pipelines.pairs.list_pairs import OUTPUTS, list_pairs
    from pipelines.pairs.load_pair_frames import LoadPairFrames
    from pipelines.pairs.probe_pairs import ProbePairs
    from sama.encoders._hf import quiet_hf
    from sama.encoders.tiny_vlm import make_tiny_vlm
    from sama.judge import Judge, JudgePair
    from tests.sama.test_vlm import _teach

    tmp = tmp_path_factory.mktemp("judge")
    rows = [json.loads(x) for x in Path(pair_set["manifest"]).read_text().splitlines()]
    manifest = tmp / "pairs.jsonl"
    manifest.write_text("".join(json.dumps({**r, "source": pair_set["pairs"][r["id"]]
                                            ["source_uri"], "target": pair_set["pairs"][r["id"]]
                                            ["target_uri"]}) + "\n"
                                for r in rows if r["id"] in ANSWERS))  # fmt: skip
    tiny = make_tiny_vlm(tmp / "vlm", seed=0)
    cfg = pair_config(models, str(manifest), str(tmp / "unused"), *JUDGE,
                      f"judge.vlm.model_id={tiny}", f"input.allowed_roots=[{pair_set['root']}]")  # fmt: skip
    table = pa.concat_tables(list(list_pairs(cfg)))
    stages = [ProbePairs(cfg), LoadPairFrames(cfg)]
    for stage, cols in zip(stages, plan(stages, OUTPUTS, ()), strict=True):
        table = pa.concat_tables(list(apply_stage(stage, table, cols, stage.registry)))
    batch = to_rows(table, tuple(table.column_names))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: more threads only oversubscribe (tests/sama/test_vlm)
    try:
        judge = Judge.load(cfg.judge)
        lessons = [
            (JudgePair(jp.judge_visual(r, "source"), jp.judge_visual(r, "target"), r["instruction"],
                       r["pair_id"]), ANSWERS[r["pair_id"]])
            for r in batch
        ]  # fmt: skip
        _teach(judge.model, judge.processor, judge, lessons)
    finally:
        torch.set_num_threads(threads)
    taught = tmp / "taught"
    with quiet_hf():
        judge.model.save_pretrained(taught)
    for name in (
        "tokenizer.json",
        "tokenizer_config.json",
        "preprocessor_config.json",
        "chat_template.json",
    ):
        shutil.copy(Path(tiny) / name, taught / name)  # fmt: skip
    return {"manifest": str(manifest), "model": str(taught), "tmp": tmp,
            "allowed": f"input.allowed_roots=[{pair_set['root']}]"}  # fmt: skip


def _judged(root: Path) -> tuple[dict, dict]:
    pairs = {r["pair_id"]: r for r in _table(root, "pairs").to_pylist()}
    errors = {r["item_id"]: r for r in _table(root, "errors").to_pylist()}
    return pairs, errors


def test_judge_scores_filters_and_records_unparseable_answers(ray_address, models, judge_setup):
    j = judge_setup
    out = j["tmp"] / "filter_build"
    cfg = pair_config(
        models, j["manifest"], str(out), j["allowed"], *JUDGE, f"judge.vlm.model_id={j['model']}"
    )
    summary = build(cfg)  # on Ray: the judge is an actor pool
    pairs, errors = _judged(out)
    assert list(pairs) == ["image_recolor"]
    row = pairs["image_recolor"]
    assert (row["score_if"], row["score_vq"], row["score_cp"], row["score_mc"]) == (9, 9, 10, None)
    assert row["judge_model"] == j["model"]
    assert {k: (e["kind"], e["stage"]) for k, e in errors.items()} == {
        "video_recolor": ("filtered", "judge_pairs"),
        "image_add_portrait": ("judge_unparseable", "judge_pairs"),
    }
    assert "motion_consistency 6 < 8" in errors["video_recolor"]["message"]
    assert summary["num_inputs_unaccounted"] == 0 and validate(str(out)).ok
    prov = read_provenance(pq.read_schema(_shards(out, "pairs")[0]))
    assert prov["judge"]["filter"] == "build" and prov["judge"]["runs"] == 1
    # filter=trainer: the pair under the thresholds is kept with its scores
    out2 = j["tmp"] / "filter_trainer"
    keep = pair_config(models, j["manifest"], str(out2), j["allowed"], *JUDGE, "judge.filter=trainer",
                       f"judge.vlm.model_id={j['model']}", "engine.executor=local")  # fmt: skip
    build(keep)
    pairs, errors = _judged(out2)
    assert sorted(pairs) == ["image_recolor", "video_recolor"]
    assert (pairs["video_recolor"]["score_mc"], pairs["video_recolor"]["score_cp"]) == (6, 8)
    assert {k: e["kind"] for k, e in errors.items()} == {"image_add_portrait": "judge_unparseable"}
