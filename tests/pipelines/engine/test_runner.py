"""``engine/runner.py`` without Ray: where the actor pools go (``plan_placement`` on fake node
lists) and how ``engine.fuse`` groups the stages. The stages are the clip recipe's, from the
demo config (nothing is loaded: placement reads only their resources)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.clips.recipe import make_stages
from pipelines.engine.runner import Node, fuse_groups, plan_placement
from sama.errors import ConfigError
from tests.pipelines.helpers import demo_config


def _stages(*overrides: str):
    cfg = demo_config(Path("/no/models/needed"), "in.jsonl", "out", *overrides)
    return make_stages(cfg), cfg


def _groups(*overrides: str):
    stages, cfg = _stages(*overrides)
    return fuse_groups(stages, cfg.engine.fuse)


def _names(groups, pins) -> dict[str, str]:
    return {"+".join(s.name for s in groups[i]): node for i, node in pins.items()}


def test_the_demo_pools_go_on_one_node_and_the_other_keeps_a_whole_cpu():
    """2 nodes x 1 CPU, three 0.25-CPU actor pools: packed on one node, so the decode tasks
    (1 CPU each) still fit on the other (spread, no node would have had a whole CPU)."""
    groups = _groups()
    assert [g[0].name for g in groups] == ["probe", "cut_clips", "caption", "encode_anchors",
                                           "encode_latents", "encode_text"]  # fmt: skip
    pins, problems = plan_placement(groups, [Node("n1", 1.0, 0.0), Node("n2", 1.0, 0.0)])
    assert problems == []
    assert _names(groups, pins) == {"encode_anchors": "n1", "encode_latents": "n1",
                                    "encode_text": "n1"}  # fmt: skip
    pins, problems = plan_placement(groups, [Node("big", 4.0, 0.0)])
    assert problems == [] and set(pins.values()) == {"big"}


def test_an_infeasible_plan_is_reported_naming_the_knobs():
    groups = _groups("engine.latents.num_cpus=0.75", "engine.anchors.num_cpus=0.75")
    _, problems = plan_placement(groups, [Node("n1", 1.0, 0.0), Node("n2", 1.0, 0.0)])
    assert problems, "no node has a whole CPU left for a task"
    msg = problems[0]
    assert "no node has 1 CPU for a probe task" in msg
    assert "engine.<stage>.num_cpus" in msg and "concurrency" in msg
    big = _groups("engine.latents.concurrency=3", "engine.latents.num_cpus=1")
    _, problems = plan_placement(big, [Node("n1", 1.0, 0.0), Node("n2", 1.0, 0.0)])
    assert any("the encode_latents pool needs 3 x (1 CPU, 0 GPU)" in p for p in problems)


def test_gpu_pools_go_on_gpu_nodes():
    groups = _groups("engine.latents.num_gpus=1", "engine.latents.concurrency=2",
                     "engine.anchors.num_gpus=0.5")  # fmt: skip
    nodes = [Node("cpu", 4.0, 0.0), Node("gpu", 8.0, 4.0)]
    pins, problems = plan_placement(groups, nodes)
    assert problems == []
    assert _names(groups, pins)["encode_latents"] == "gpu"
    assert _names(groups, pins)["encode_anchors"] == "gpu"
    too_many = _groups("engine.latents.num_gpus=1", "engine.latents.concurrency=5")
    _, problems = plan_placement(too_many, [Node("g1", 8.0, 2.0), Node("g2", 8.0, 2.0)])
    assert problems == ["the encode_latents pool needs 5 x (0.25 CPU, 1 GPU) and the cluster's "
                        "nodes cannot hold it"]  # fmt: skip
    spread = _groups("engine.latents.num_gpus=1", "engine.latents.concurrency=3")
    pins, problems = plan_placement(spread, [Node("g1", 8.0, 2.0), Node("g2", 8.0, 2.0)])
    assert problems == [] and "encode_latents" not in _names(spread, pins)  # Ray spreads it


# ---- engine.fuse ----------------------------------------------------------------------------


def test_fuse_groups_runs_consecutive_stages_as_one():
    stages, _ = _stages()
    groups = fuse_groups(stages, [["cut_clips", "caption", "encode_anchors"]])
    assert [[s.name for s in g] for g in groups] == [
        ["probe"], ["cut_clips", "caption", "encode_anchors"], ["encode_latents"], ["encode_text"]
    ]  # fmt: skip
    assert all(s is t for g in groups for s in g for t in stages if t.name == s.name)
    # a stage holds a model: the group is an actor pool with its largest stage's CPU (1), so
    # on two 1-CPU nodes nothing would be left for a probe task; on 2 + 1 CPUs it fits
    _, problems = plan_placement(groups, [Node("n1", 1.0, 0.0), Node("n2", 1.0, 0.0)])
    assert problems and "for a probe task" in problems[0]
    pins, problems = plan_placement(groups, [Node("n1", 2.0, 0.0), Node("n2", 1.0, 0.0)])
    assert problems == []
    assert _names(groups, pins) == {"cut_clips+caption+encode_anchors": "n2",
                                    "encode_latents": "n1", "encode_text": "n1"}  # fmt: skip


def test_a_fuse_group_that_names_a_disabled_stage_fuses_the_enabled_ones():
    """A config that works for both decode paths names stages only one of them has."""
    stages, _ = _stages()  # single pass: no detect_shots / make_clips
    groups = fuse_groups(stages, [["detect_shots", "cut_clips", "caption"]])
    assert [[s.name for s in g] for g in groups][:3] == [["probe"], ["cut_clips", "caption"],
                                                         ["encode_anchors"]]  # fmt: skip


def test_a_fuse_group_with_a_misspelt_stage_is_a_config_error():
    stages, _ = _stages()
    with pytest.raises(ConfigError, match=r"unknown stage\(s\) \['encode_latent'\].*probe"):
        fuse_groups(stages, [["encode_latent", "encode_anchors"]])


@pytest.mark.parametrize("group", [["probe", "caption"], ["encode_latents", "encode_anchors"]])
def test_a_fuse_group_that_is_not_consecutive_is_a_config_error(group):
    stages, _ = _stages()
    with pytest.raises(ConfigError, match=r"not a run of consecutive enabled stages.*probe"):
        fuse_groups(stages, [group])


# ---- GroupRunner: a group's stages applied to Arrow batches ---------------------------------


def test_group_runner_applies_its_stages_in_order_and_splits_rows_for_the_writer(shot_video):
    """What a task (or an actor) runs for a fused group: probe + cut_clips on one video."""
    import pyarrow as pa

    from pipelines.clips.list_inputs import OUTPUTS, list_inputs
    from pipelines.engine.runner import GroupRunner
    from pipelines.engine.stage import check_plan

    stages, cfg = _stages(f"input.uri={shot_video['path']}", "caption.source=none")
    group = stages[:2]
    assert [s.name for s in group] == ["probe", "cut_clips"]
    columns = check_plan(group, OUTPUTS, ())
    table = pa.concat_tables(list(list_inputs(cfg)))
    whole = list(GroupRunner([type(s) for s in group], cfg, columns, split_rows=False)(table))
    split = list(GroupRunner([type(s) for s in group], cfg, columns, split_rows=True)(table))
    assert all(t.num_rows == 1 for t in split) and len(split) == 3
    rows = pa.concat_tables(whole).to_pylist()
    assert [r["clip_id"].split("-", 1)[1] for r in rows] == ["s000-c00", "s001-c00", "s002-c00"]
    assert pa.concat_tables(split).column("clip_id").to_pylist() == [r["clip_id"] for r in rows]
    assert all(t.column_names == list(columns[-1]) for t in whole + split)


def test_map_files_in_process_keeps_the_item_order_and_reports_each_result():
    """``executor=local``; the Ray path is exercised by ``sama dedup`` on Ray
    (tests/pipelines/dataset/test_dedup.py)."""
    from pipelines.engine.runner import map_files

    seen = []
    out = map_files(
        len, ["a", "bbb", ""], executor="local", on_result=lambda i, r: seen.append((i, r))
    )
    assert out == [1, 3, 0] and seen == [(0, 1), (1, 3), (2, 0)]
    with pytest.raises(TypeError):
        map_files(len, [3], executor="local")  # fn's own exception comes through
