"""The clip recipe's stages without Ray, each run through the engine's adapter
(``pipelines.engine.apply.apply_stage``, strict mode): declared columns == produced columns,
clip planning, the clip makers' accounting, single vs two pass, listing, configs, the VLM
captioner, and the layering (only the runner imports Ray).

Legend: ``clip_THWC`` = clip frames (time, height, width, RGB).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from datasets_spec import CLIPS as CLIPS_SPEC
from pipelines.clips.columns import CLIP_COLUMNS, REQUIRED_CLIP_COLUMNS
from pipelines.clips.detect_shots import DetectShots
from pipelines.clips.list_inputs import OUTPUTS, list_inputs
from pipelines.clips.make_clips import MakeClips
from pipelines.clips.probe_videos import ProbeVideos
from pipelines.clips.recipe import CLIPS, RECORD, make_stages
from pipelines.config import BuildConfig, load_build_config
from pipelines.encode.encode_anchors import anchor_indices
from pipelines.engine.apply import apply_stage
from pipelines.engine.listing import write_inputs
from pipelines.engine.stage import Stage, check_plan
from pipelines.engine.writer import data_table
from sama.errors import ConfigError, FatalError
from sama.video.boundaries import Boundary
from sama.video.cutting import ShotCutter, clip_stats, decode_runs, plan_clips
from tests.pipelines.helpers import CONFIGS, demo_config, tiny_models

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return tiny_models(tmp_path_factory)


def listed(cfg: BuildConfig) -> pa.Table:
    return pa.concat_tables(list(list_inputs(cfg)))


def run(stages: list[Stage], table: pa.Table, columns=None) -> pa.Table:
    """``stages`` applied in order through the adapter (strict), each to the whole table; every
    batch it yields carries exactly the planned columns."""
    columns = columns or check_plan(stages, table.column_names, ())
    for st, cols in zip(stages, columns, strict=True):
        st.setup()
        out = list(apply_stage(st, table, cols, CLIP_COLUMNS, strict=True,
                               retries=st.cfg.engine.input_retries))  # fmt: skip
        assert out, st.name
        for t in out:
            assert t.column_names == list(cols), st.name
        table = pa.concat_tables(out)
    return table


def good(table: pa.Table) -> pa.Table:
    return table.filter(pc.is_null(table.column("error_kind")))


def bad(table: pa.Table) -> pa.Table:
    return table.filter(pc.is_valid(table.column("error_kind")))


def frames(row: dict) -> np.ndarray:
    return np.frombuffer(row["frames"], np.uint8).reshape(row["frames_shape"])


# ---- every stage produces exactly what it declares -----------------------------------------


@pytest.mark.parametrize("decode", ["single_pass", "two_pass"])
def test_each_stage_produces_exactly_its_declared_columns(decode, shot_video, models, tmp_path):
    manifest = tmp_path / "m.jsonl"
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "v.mp4").symlink_to(shot_video["path"])
    manifest.write_text(
        json.dumps({"id": "v", "video": "v.mp4", "caption": "a square moves"}) + "\n"
        + json.dumps({"id": "e", "video": "empty.mp4", "caption": "nothing"}) + "\n"
    )  # fmt: skip
    cfg = demo_config(models, str(manifest), str(tmp_path / "out"), f"clips.decode={decode}")
    stages = make_stages(cfg)
    assert [st.name for st in stages][:3] == (
        ["probe", "cut_clips", "caption"] if decode == "single_pass"
        else ["probe", "detect_shots", "make_clips"]
    )  # fmt: skip
    table = listed(cfg)
    assert table.column_names == list(OUTPUTS)
    assert table.column("source_uri").to_pylist()[1] == str(tmp_path / "empty.mp4")
    columns = check_plan(stages, OUTPUTS, CLIPS.sink_columns)
    for st, cols in zip(stages, columns, strict=True):
        table = run([st], table, [cols])
        ok = good(table)
        assert ok.num_rows, st.name
        for name in st.outputs:  # every declared output is filled on every good row
            assert ok.column(name).null_count == 0, (st.name, name)
    errors = bad(table).to_pylist()
    assert [(r["video_id"], r["error_stage"], r["error_kind"]) for r in errors] == [
        ("e", "probe", "zero_byte")
    ]
    clips = good(table).to_pylist()
    assert [r["clip_id"] for r in clips] == ["v-s000-c00", "v-s001-c00", "v-s002-c00"]
    announced = [r["input_rows"] for r in clips]  # single pass: the last row announces
    assert announced == [0, 0, 3]  # both paths: the last row announces
    assert all(r["row_weight"] == 1 for r in clips)
    assert "frames" not in table.column_names  # EncodeClipLatents dropped them
    assert set(REQUIRED_CLIP_COLUMNS) <= set(table.column_names)
    CLIPS_SPEC.validate(data_table(good(table), CLIPS_SPEC))
    r = clips[0]
    assert r["latents_shape"] == [16, 5, 10, 10] and r["anchor_tokens_shape"][:2] == [1, 65]
    assert r["text_prompts"][0] == "a square moves" and len(r["text_prompts"]) == 4
    assert sum(r["text_lengths"]) == r["text_embeds_shape"][0]
    assert r["video_duration_s"] == pytest.approx(87 / 24, abs=0.05)  # for hours processed


def test_check_plan_names_the_problem():
    cfg = BuildConfig()
    with pytest.raises(FatalError, match="make_clips.*shot_starts"):
        check_plan([ProbeVideos(cfg), MakeClips(cfg)], OUTPUTS, ())
    with pytest.raises(FatalError, match="writer needs"):
        check_plan([ProbeVideos(cfg), DetectShots(cfg)], OUTPUTS, CLIPS.sink_columns)

    class Bad(Stage):
        name = "bad"
        registry = CLIP_COLUMNS
        outputs = ("not_a_column",)

    with pytest.raises(FatalError, match="unknown columns"):
        check_plan([Bad(cfg)], OUTPUTS, ())


# ---- clip planning, anchors, statistics ----------------------------------------------------


def test_plan_clips_policies():
    starts, ends = [0, 30, 50], [30, 50, 150]  # shots of 30, 20, 100 frames
    first = plan_clips(starts, ends, 17)
    assert [(p.shot_index, p.start, p.num_frames) for p in first] == [
        (0, 0, 17), (1, 30, 17), (2, 50, 17)
    ]  # fmt: skip
    multi = plan_clips(starts, ends, 33, "multi")
    assert [(p.shot_index, p.clip_index, p.start) for p in multi] == [
        (2, 0, 50), (2, 1, 83), (2, 2, 116)
    ]  # fmt: skip
    assert [p.start for p in plan_clips(starts, ends, 33, "multi", max_clips_per_shot=1)] == [50]
    shorter = plan_clips(starts, ends, 33, "first", min_frames=17)
    assert [(p.start, p.num_frames) for p in shorter] == [(0, 29), (30, 17), (50, 33)]
    assert all(p.end <= p.shot_end for p in shorter)
    assert plan_clips([0], [16], 17) == []
    runs = decode_runs(plan_clips([0, 30, 300], [20, 200, 400], 17, "multi"), seek_gap_frames=10)
    assert [[p.start for p in r] for r in runs] == [
        [0],  # 13 frames to the next clip: seek
        list(range(30, 184, 17)),  # back-to-back clips: one stream
        list(range(300, 369, 17)),
    ]


def test_anchor_indices_and_clip_stats():
    assert anchor_indices(17, 1, "first") == [0]
    assert anchor_indices(17, 3, "uniform") == [0, 8, 16]
    clip_THWC = np.zeros((3, 4, 4, 3), np.uint8)
    clip_THWC[1] = 255
    luma, motion = clip_stats(clip_THWC)
    assert luma == pytest.approx(85.0, abs=0.01) and motion == pytest.approx(255.0, abs=0.01)
    assert clip_stats(clip_THWC[:1]) == (0.0, 0.0)


def _probed(cfg: BuildConfig) -> pa.Table:
    table = listed(cfg)
    return run([ProbeVideos(cfg)], table)


def test_make_clips_keeps_made_clips_and_accounts_for_the_rest(shot_video, tmp_path):
    """A video that ends before its last planned clip: the clips made stay, one error row with
    the missing clips' weight stands for the rest, so the input is still fully accounted."""
    cfg = load_build_config(None, [f"input.uri={shot_video['path']}", f"output.uri={tmp_path}",
                                   "clips.resolution=64", "clips.num_frames=17",
                                   "clips.decode=two_pass"])  # fmt: skip
    probed = _probed(cfg)
    n = probed.num_rows
    shots = probed.append_column(
        "shot_starts", pa.array([[0, 30, 66, 87]] * n, pa.list_(pa.int64()))
    )
    shots = shots.append_column(
        "shot_ends", pa.array([[30, 66, 87, 120]] * n, pa.list_(pa.int64()))
    )
    out = run([MakeClips(cfg)], shots)  # the video has 87 frames
    ok, err = good(out).to_pylist(), bad(out).to_pylist()
    assert len(ok) == 3 and len(err) == 1
    assert (err[0]["error_kind"], err[0]["error_stage"]) == ("truncated", "make_clips")
    rows = out.to_pylist()  # in the order made: the last row announces the video's count
    assert err[0]["row_weight"] == 1 and [r["input_rows"] for r in rows] == [0, 0, 0, 4]
    assert sum(r["row_weight"] for r in rows) == 4
    assert frames(ok[1]).shape == (17, 80, 80, 3)  # 64x64 -> the square bucket at 64p
    none = shots.set_column(shots.schema.get_field_index("shot_starts"), "shot_starts",
                            pa.array([[0, 80]] * n, pa.list_(pa.int64())))  # fmt: skip
    none = none.set_column(none.schema.get_field_index("shot_ends"), "shot_ends",
                           pa.array([[10, 87]] * n, pa.list_(pa.int64())))  # fmt: skip
    (row,) = run([MakeClips(cfg)], none).to_pylist()  # shots of 10 and 7 frames
    assert (row["error_kind"], row["input_rows"], row["row_weight"]) == ("no_usable_shot", 1, 1)


# ---- single-pass cutting ------------------------------------------------------------------


class _LateDetector:
    """Reports each cut ``delay`` frames after it happens (a boundary detector's contract)."""

    def __init__(self, cuts: list[int], delay: int, lag: int) -> None:
        self.cuts, self.delay, self.lag = cuts, delay, lag

    def push(self, i, frame):
        return [Boundary(c, c, "cut") for c in self.cuts if c + self.delay == i]

    def finish(self, n):
        return [Boundary(c, c, "cut") for c in self.cuts if c + self.delay >= n]


@pytest.mark.parametrize("delay", [0, 2, 9])
def test_shot_cutter_assigns_frames_to_the_right_shot_even_for_late_cuts(delay):
    """Frames are ints here; a shot's kept frames are exactly its first ``window`` frames. A
    cut reported later than ``lag`` leaves the new shot short (CutClips re-decodes that clip),
    never with frames of another shot. ``alloc`` is called once per shot that keeps frames."""
    cuts, n, window, lag = [10, 30, 34], 50, 6, 3
    allocs = []

    def alloc(k: int) -> np.ndarray:
        allocs.append(k)
        return np.full(k, -1)

    cutter = ShotCutter(_LateDetector(cuts, delay, lag), window, lambda f: f, lambda f: f, alloc)
    shots = [s for i in range(n) for s in cutter.push(i, i)] + cutter.finish(n)
    assert [(s.start, s.end) for s in shots] == [(0, 10), (10, 30), (30, 34), (34, 50)]
    for s in shots:
        want = list(range(s.start, min(s.end, s.start + window)))
        got = cutter.clip_frames(s, s.filled).tolist() if s.filled else []
        assert got == want[: len(got)]  # a prefix of the right frames, never others
        if delay <= lag:
            assert got == want
    assert set(allocs) == {window} and len(allocs) <= len(shots)


def test_shot_cutter_leaves_the_frames_of_a_gradual_boundary_to_no_shot():
    """A dissolve [20, 32) reported late (its start far behind the frames already kept): the
    shot before ends at 20, the next starts at 32, and no kept frame lies inside."""

    class Dissolve:
        lag = 12

        def push(self, i, frame):
            return [Boundary(20, 32, "dissolve")] if i == 40 else []

        def finish(self, n):
            return []

    converted = []
    cutter = ShotCutter(Dissolve(), 30, lambda f: f, lambda f: converted.append(f) or f,
                        lambda k: np.full(k, -1))  # fmt: skip
    shots = [s for i in range(60) for s in cutter.push(i, i)] + cutter.finish(60)
    assert [(s.start, s.end) for s in shots] == [(0, 20), (32, 60)]
    assert cutter.clip_frames(shots[0], shots[0].filled).tolist() == list(range(20))
    assert cutter.clip_frames(shots[1], shots[1].filled).tolist() == list(range(32, 60))
    assert sorted(converted) == [*range(20), *range(32, 60)]  # each kept frame converted once


def test_shot_cutter_converts_only_the_frames_of_shots_long_enough_for_a_clip():
    """Frames are held decoded until their shot reaches the clip's length; a shot that ends
    sooner costs no conversion (most shots of real footage are shorter than 81 frames)."""

    class Cuts:
        lag = 2

        def push(self, i, frame):
            return [Boundary(c, c, "cut") for c in (5, 40) if c == i]

        def finish(self, n):
            return []

    converted = []
    cutter = ShotCutter(Cuts(), 10, lambda f: f, lambda f: converted.append(f) or f,
                        lambda k: np.full(k, -1))  # fmt: skip
    shots = [s for i in range(60) for s in cutter.push(i, i)] + cutter.finish(60)
    assert [(s.start, s.end) for s in shots] == [(0, 5), (5, 40), (40, 60)]
    assert converted == [*range(5, 15), *range(40, 50)]  # the 5-frame shot: none


def test_single_pass_and_two_pass_cut_the_same_clips(sample_set, tmp_path):
    """One decode (CutClips) finds the same shots and clips as DetectShots + MakeClips, decodes
    every frame once, and its clip pixels match the two-pass ones (up to decoder rounding)."""
    from pipelines.clips.cut_clips import CutClips

    vids = [v["path"] for v in sample_set["videos"].values()]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps({"video": v}) + "\n" for v in vids))
    base = [f"input.uri={tmp_path / 'm.jsonl'}", "output.uri=/unused", "caption.source=none",
            "clips.resolution=64", "clips.num_frames=17", "shots.min_shot_frames=8",
            f"input.allowed_roots=[{sample_set['root']}]"]  # fmt: skip
    out = {}
    for decode in ("single_pass", "two_pass"):
        cfg = load_build_config(None, [*base, f"clips.decode={decode}"])
        stages = make_stages(cfg)[: 3 if decode == "two_pass" else 2]
        table = run(stages, listed(cfg))
        assert bad(table).num_rows == 0
        out[decode] = ({r["clip_id"]: r for r in good(table).to_pylist()}, stages[-1])
    (one, cut), (two, make) = out["single_pass"], out["two_pass"]
    assert sorted(one) == sorted(two) and len(one) == 10
    for cid, r in one.items():
        keys = ("shot_start_frame", "shot_end_frame", "start_frame", "num_frames", "bucket_width",
                "frames_shape")  # fmt: skip
        assert [r[k] for k in keys] == [two[cid][k] for k in keys], cid
        a, b = frames(r).astype(np.int16), frames(two[cid]).astype(np.int16)
        assert np.abs(a - b).mean() < 2.0, cid
    total = sum(v["num_frames"] for v in sample_set["videos"].values())
    kept = sum(r["num_frames"] for r in one.values())
    assert isinstance(cut, CutClips) and cut.frames_decoded == total and cut.frames_redecoded == 0
    assert make.frames_decoded >= kept  # two-pass: every kept frame decoded a second time


# ---- listing -------------------------------------------------------------------------------


def _list(uri: str, *overrides: str) -> list[dict]:
    cfg = load_build_config(None, [f"input.uri={uri}", "output.uri=/unused", *overrides])
    return listed(cfg).to_pylist()


def test_list_inputs_dir_and_glob(tmp_path):
    vids = tmp_path / "v"
    (vids / "sub").mkdir(parents=True)
    for name in ("a.mp4", "sub/b.mkv", "notes.txt", ".hidden.mp4"):
        (vids / name).write_bytes(b"x")
    found = _list(str(vids), "caption.source=none")
    assert [Path(r["source_uri"]).name for r in found] == ["a.mp4", "b.mkv"]
    assert len({r["video_id"] for r in found}) == 2
    assert all((r["input_rows"], r["row_weight"], r["error_kind"]) == (1, 1, None) for r in found)
    assert [Path(r["source_uri"]).name for r in _list(f"{vids}/*.mp4")] == ["a.mp4"]
    assert len(_list(str(vids), "input.limit=1")) == 1
    with pytest.raises(ConfigError, match="does not exist"):
        _list(str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="holds no videos"):
        _list(str(vids / "sub"), "input.extensions=[.avi]")


def test_list_inputs_manifests(tmp_path):
    vids = tmp_path / "v"
    vids.mkdir()
    (vids / "a.mp4").write_bytes(b"x")
    (tmp_path / "m.csv").write_text(
        "video,caption,id\nv/a.mp4,first,x1\n,no video,x2\nv/a.mp4,dup,x1\n"
        "../outside.mp4,escape,x3\n/etc/passwd,abs,x4\n"
    )
    rows = _list(str(tmp_path / "m.csv"))
    assert [(r["video_id"], r["error_kind"]) for r in rows] == [
        ("x1", None), ("x2", "bad_manifest_row"), ("x1", None), ("x3", "not_allowed"),
        ("x4", "not_allowed"),
    ]  # fmt: skip
    assert rows[0]["source_uri"] == str(vids / "a.mp4") and rows[0]["manifest_caption"] == "first"
    assert rows[1]["source_uri"] == f"{tmp_path / 'm.csv'}#1"
    assert rows[3]["source_uri"] == str(tmp_path.parent / "outside.mp4")
    assert "input.allowed_roots" in rows[3]["error_message"]
    assert all(r["error_stage"] == "list_inputs" for r in rows if r["error_kind"])
    wider = _list(str(tmp_path / "m.csv"), f"input.allowed_roots=[{tmp_path.parent}]")
    assert [r["error_kind"] for r in wider][3:] == [None, "not_allowed"]
    # the duplicate id becomes an error row when the engine writes the inputs table
    chunks = list_inputs(
        load_build_config(None, [f"input.uri={tmp_path / 'm.csv'}", "output.uri=o"])
    )
    fs = fsspec.filesystem("file")
    li = write_inputs(fs, str(tmp_path / "out"), "clips", chunks, "video_id",
                      pa.array([], pa.string()), "list_inputs")  # fmt: skip
    assert li.duplicates == 1
    (part,) = {p for p, _, _ in li.parts}
    assert pq.read_table(part).column("video_id").to_pylist()[2] == "x1@row2"


def test_list_inputs_broken_lines_and_missing_columns(tmp_path):
    vids = tmp_path / "v"
    vids.mkdir()
    (vids / "a.mp4").write_bytes(b"x")
    m = tmp_path / "m.jsonl"
    m.write_text('{"video": "v/a.mp4", "caption": "c"}\n{"video": "v/b.mp4", broken\n')
    rows = _list(str(m))
    assert rows[0]["error_kind"] is None and rows[1]["error_kind"] == "bad_manifest_row"
    assert rows[1]["source_uri"] == f"{m}#1" and "line 2 is not JSON" in rows[1]["error_message"]
    assert rows[0]["video_id"] != rows[1]["video_id"]
    pq.write_table(pa.table({"video": [str(vids / "a.mp4")]}), tmp_path / "m.parquet")
    with pytest.raises(ConfigError, match="no 'caption' column"):
        _list(str(tmp_path / "m.parquet"))
    assert _list(str(tmp_path / "m.parquet"), "caption.source=none")[0]["manifest_caption"] is None
    with pytest.raises(ConfigError, match="no 'path' column.*set input.video_column"):
        _list(str(tmp_path / "m.parquet"), "caption.source=none", "input.video_column=path")


def test_list_inputs_remote_filesystem():
    fs = fsspec.filesystem("memory")
    fs.pipe("/listing_test/a.mp4", b"x")
    fs.pipe("/listing_test/b.webm", b"x")
    try:
        rows = _list("memory://listing_test", "caption.source=none")
        assert [r["source_uri"] for r in rows] == ["memory:///listing_test/a.mp4",
                                                   "memory:///listing_test/b.webm"]  # fmt: skip
        fs.pipe("/listing_test/m.jsonl", b'{"video": "a.mp4", "caption": "c"}\n'
                                         b'{"video": "/elsewhere/x.mp4", "caption": "c"}\n')  # fmt: skip
        rows = _list("memory://listing_test/m.jsonl")
        assert rows[0]["source_uri"] == "memory:///listing_test/a.mp4"
        assert rows[1]["error_kind"] == "not_allowed"
    finally:
        fs.rm("/listing_test", recursive=True)


# ---- config --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("clips.num_frames=16", "4k\\+1"),
        ("anchors.num=2", "anchors.policy=uniform"),
        ("clips.min_frames=90", "min_frames"),
        ("engine.latents.batch_size=0", "batch_size"),
        ("clip.num_frames=17", "Did you mean 'clips'"),
        ("vae.model_id={models_dir}/wan", "models_dir is not set"),
        ("engine.max_error_rate=2", r"max_error_rate=2.0 must be in \[0, 1\]"),
        ("budget.max_memory_mb=10", "budget.max_memory_mb must be >= 256"),
        ("engine.lease_ttl_s=1", "lease_ttl_s must be >= 5"),
        ("engine.fuse=[[]]", "engine.fuse groups must name at least one stage"),
        ("output.row_group_mb=0", "row_group_mb=0"),
    ],
)
def test_bad_config_fails_at_start_with_a_fix(override, message):
    with pytest.raises(ConfigError, match=message):
        load_build_config(None, ["input.uri=x", "output.uri=y", override])


def test_single_pass_blockers_fail_with_a_fix():
    with pytest.raises(ConfigError, match="clips.decode=single_pass does not work with.*multi"):
        load_build_config(None, ["input.uri=x", "output.uri=y", "clips.decode=single_pass",
                                 "clips.long_shot=multi"])  # fmt: skip
    auto = load_build_config(None, ["input.uri=x", "output.uri=y", "clips.long_shot=multi"])
    assert not auto.single_pass() and [s.name for s in make_stages(auto)][1:3] == [
        "detect_shots", "make_clips"
    ]  # fmt: skip


def test_shipped_configs_load(models):
    clips = load_build_config(CONFIGS / "build_clips.yaml")
    assert (clips.clips.num_frames, clips.clips.resolution, clips.anchors.num) == (81, 480, 1)
    demo = load_build_config(CONFIGS / "build_demo.yaml", [f"models_dir={models}"])
    assert demo.vae.model_id == f"{models}/wan" and demo.clips.num_frames == 17
    pairs = load_build_config(CONFIGS / "build_demo_pairs.yaml", [f"models_dir={models}"])
    assert pairs.input.kind == "pairs"
    assert RECORD.name == "clips" and RECORD.spec is CLIPS_SPEC


def test_vlm_captions_through_the_stage(models, shot_video, tmp_path):
    """caption.source=vlm: sama.captioner with a tiny random Qwen2.5-VL, recorded per row."""
    from pipelines.clips.caption_clips import CaptionClips
    from sama.encoders.tiny_vlm import make_tiny_vlm

    vlm = make_tiny_vlm(tmp_path / "vlm")
    cfg = demo_config(models, shot_video["path"], str(tmp_path / "o"), "caption.source=vlm",
                      f"caption.vlm.model_id={vlm}", "caption.vlm.max_new_tokens=4",
                      "caption.vlm.num_frames=2", "caption.vlm.device=cpu")  # fmt: skip
    stages = make_stages(cfg)
    cap = stages[2]
    assert isinstance(cap, CaptionClips) and cap.uses_actor() and "frames" in cap.inputs
    table = run(stages[:3], listed(cfg))
    rows = table.to_pylist()
    assert len(rows) == 3
    assert all(r["caption_source"] == f"vlm:{vlm}" or r["error_kind"] == "encode_error"
               for r in rows)  # fmt: skip
    assert "frames" in table.column_names  # still there for the encoders
    assert cap.describe()["caption"]["vlm"]["model_id"] == vlm


# ---- layering ------------------------------------------------------------------------------


def test_only_the_runner_imports_ray():
    """CONVENTIONS.md layout: stages are Ray-free; the runner imports Ray inside functions."""
    root = REPO / "pipelines"
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if p.name != "runner.py"
        and any(
            line.strip().startswith(("import ray", "from ray"))
            for line in p.read_text().splitlines()
        )  # fmt: skip
    ]
    assert offenders == []
    code = ("import sys, pipelines.clips.recipe, pipelines.pairs.recipe, pipelines.engine.driver, "
            "pipelines.build; print('ray' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO)  # fmt: skip
    assert out.stdout.strip() == "False"
