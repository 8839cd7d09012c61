"""The streaming loader (trainer.data): buckets, ratio, epochs, rank split, resume, provenance.

Shards are written in the tests with ``sama.shards.write_shard`` from ``tests.fakes`` rows:
C=4 latent channels, 4x6 (landscape) or 6x4 (portrait) latent pixels, 3-frame videos, images.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter

import pytest
import torch

from sama.config import load_config
from sama.errors import ConfigError
from tests.fakes import fake_provenance, make_fake_clip_rows, make_fake_pair_rows, write_fake_shard
from trainer.data import DataConfig, SourceConfig, StreamingLoader

EXPECTED = {
    "vae": {"id": "fake/wan-vae", "config_hash": "vae0"},
    "siglip": {"id": "fake/siglip", "config_hash": "sig0"},
    "latent_norm": {"kind": "wan_vae_mean_std"},
    "anchor_policy": {"tokens_per_anchor": 65},
}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    """Clips in two buckets (2 shards), image pairs, video pairs: 26 + 40 + 12 = 78 rows."""
    r = str(tmp_path_factory.mktemp("data"))
    write_fake_shard(r, "clips", "land", make_fake_clip_rows(16, prefix="cl"))
    write_fake_shard(r, "clips", "port", make_fake_clip_rows(10, prefix="cp", latent_hw=(6, 4)))
    write_fake_shard(r, "pairs", "img", make_fake_pair_rows(40, prefix="pi"))
    write_fake_shard(r, "pairs", "vid", make_fake_pair_rows(12, prefix="pv", media="video"))
    return r


ALL_IDS = (
    {f"cl-{i}" for i in range(16)}
    | {f"cp-{i}" for i in range(10)}
    | {f"pi-{i}" for i in range(40)}
    | {f"pv-{i}" for i in range(12)}
)


def make_cfg(root: str, **kw) -> DataConfig:
    base = dict(
        sources=[SourceConfig(root, "clips"), SourceConfig(root, "pairs")],
        image_batch_size=4,
        video_batch_size=2,
        shuffle_buffer_row_groups=2,
        num_workers=0,
        seed=7,
    )
    base.update(kw)
    return DataConfig(**base)


def epoch_batches(loader: StreamingLoader) -> list[dict]:
    return list(itertools.islice(loader, loader.batches_in_epoch()))


def test_batches_are_bucket_homogeneous(root):
    loader = StreamingLoader(make_cfg(root), expected_provenance=EXPECTED)
    batches = epoch_batches(loader)
    kinds = Counter()
    for b in batches:
        B = len(b["sample_id"])
        assert b["target_latents"].shape[0] == B == b["anchor_tokens"].shape[0]
        assert b["target_latents"].dtype == torch.bfloat16
        C, T, H, W = b["target_latents"].shape[1:]
        assert b["bucket"] == (W * 8, H * 8) and b["latent_frames"] == T
        assert b["media"] == ("video" if T > 1 else "image")
        assert (2 if T > 1 else 4) >= B
        if b["kind"] == "pair":
            assert b["source_latents"].shape == b["target_latents"].shape
            assert all(i.startswith("pv" if T > 1 else "pi") for i in b["sample_id"])
        else:
            assert "source_latents" not in b and len(b["caption"]) == B
            assert all(i.startswith("cl" if W == 6 else "cp") for i in b["sample_id"])
        assert len(b["text_embeds"]) == B and len(b["text_embeds"][0]) == len(b["text_prompts"][0])
        kinds[(b["kind"], b["bucket"], T)] += 1
    assert set(kinds) == {
        ("clip", (48, 32), 3),
        ("clip", (32, 48), 3),
        ("pair", (48, 32), 1),
        ("pair", (48, 32), 3),
    }


def test_every_sample_once_per_epoch_and_epochs_differ(root):
    loader = StreamingLoader(make_cfg(root))
    orders = []
    for epoch in range(2):
        batches = epoch_batches(loader)
        assert {b["epoch"] for b in batches} == {epoch}
        ids = [i for b in batches for i in b["sample_id"]]
        assert Counter(ids) == Counter(ALL_IDS)
        orders.append(ids)
    assert orders[0] != orders[1]
    again = epoch_batches(StreamingLoader(make_cfg(root)))
    assert [i for b in again for i in b["sample_id"]] == orders[0]


def test_video_ratio_is_followed(root):
    for ratio in (0.25, 0.5):
        batches = epoch_batches(StreamingLoader(make_cfg(root, video_batch_ratio=ratio)))
        is_video = [b["media"] == "video" for b in batches]
        n_img = sum(not v for v in is_video)
        # while both kinds remain, every prefix holds floor(n * ratio) (+-1) video batches
        last_image = max(i for i, v in enumerate(is_video) if not v)
        for n in range(1, last_image):
            assert abs(sum(is_video[:n]) - n * ratio) <= 1, (ratio, n)
        assert n_img == 10  # 40 images / 4
    only_images = epoch_batches(StreamingLoader(make_cfg(root, video_batch_ratio=0.0)))
    assert [b["media"] for b in only_images][:10] == ["image"] * 10


def test_global_ratio_per_step_across_ranks(root):
    cfg = make_cfg(root, video_batch_ratio=0.5)
    seqs = [
        [b["media"] for b in epoch_batches(StreamingLoader(cfg, rank=r, world_size=2))]
        for r in range(2)
    ]
    assert len(seqs[0]) == len(seqs[1])
    # phase-shifted schedules: while both ranks have both kinds, each step is 1 image + 1 video
    assert [tuple(sorted(s)) for s in zip(*seqs, strict=True)][:8] == [("image", "video")] * 8


@pytest.mark.parametrize("workers", [0, 2])
def test_rank_split_is_disjoint_and_covers(root, workers):
    cfg = make_cfg(root, num_workers=workers)
    per_rank = [epoch_batches(StreamingLoader(cfg, rank=r, world_size=2)) for r in range(2)]
    assert len(per_rank[0]) == len(per_rank[1])
    real = [[i for b in bs if not b["padding"] for i in b["sample_id"]] for bs in per_rank]
    assert not set(real[0]) & set(real[1])
    assert Counter(real[0] + real[1]) == Counter(ALL_IDS)
    for bs, ids in zip(per_rank, real, strict=True):  # padding replays the rank's own samples
        assert {i for b in bs if b["padding"] for i in b["sample_id"]} <= set(ids)
    cut = make_cfg(root, uneven_ranks="truncate")
    n = [StreamingLoader(cut, rank=r, world_size=2).batches_in_epoch() for r in range(2)]
    assert n[0] == n[1] <= len(per_rank[0])


def _pretext_transform(black):
    pretext = pytest.importorskip("sama.pretext")
    cfg = pretext.PretextConfig()

    def transform(sample: dict, epoch: int) -> dict:
        if sample["kind"] == "clip":
            src, prompt, info = pretext.make_pretext_sample(
                sample["target_latents"], sample["caption"], black, cfg, 11, sample["rng_id"], epoch
            )
            sample.update(source_latents=src, prompt=prompt, pretext=info["task"])
        return sample

    return transform


def _flat(v: list) -> list:
    return [y for x in v for y in (x if isinstance(x, list) else [x])]


def assert_same(a: dict, b: dict) -> None:
    """Same keys; tensors (also inside lists: per-prompt embeddings, ragged sources) equal."""
    assert a.keys() == b.keys()
    for k in a:
        va, vb = a[k], b[k]
        if isinstance(va, torch.Tensor):
            assert torch.equal(va, vb), k
        elif k in ("text_embeds", "source_latents"):
            pairs = zip(_flat(va), _flat(vb), strict=True)
            assert all(torch.equal(x, y) for x, y in pairs), k
        else:
            assert va == vb, k


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_is_bit_identical(root, workers):
    cfg = make_cfg(root, num_workers=workers, prefetch=3)
    first = StreamingLoader(cfg, expected_provenance=EXPECTED)
    transform = _pretext_transform(first.black_latent)
    per_epoch = first.batches_in_epoch(0)
    n, k = per_epoch - 3, 8  # the K batches cross into epoch 1
    whole = list(itertools.islice(StreamingLoader(cfg, transform=transform), n + k))
    a = StreamingLoader(cfg, transform=transform)
    head = list(itertools.islice(a, n))
    state = a.state_dict()
    assert state["version"] == 1 and (state["epoch"], state["batches_emitted"]) == (0, n)
    b = StreamingLoader(make_cfg(root, num_workers=2 - workers, prefetch=2), transform=transform)
    b.load_state_dict(state)
    b.horizon = 0  # every row not for the batch being built is copied out of its row group
    tail = list(itertools.islice(b, k))
    for x, y in zip(head + tail, whole, strict=True):
        assert_same(x, y)
    assert tail[-1]["epoch"] == 1 and any(
        t == "tube_shuffle" for x in whole for t in x.get("pretext", [])
    )


def test_resume_refuses_other_data(root):
    loader = StreamingLoader(make_cfg(root))
    epoch_batches(loader)  # a whole epoch: the position rolls over to the next one
    state = loader.state_dict()
    assert (state["epoch"], state["batches_emitted"]) == (1, 0) and loader.epoch == 1
    with pytest.raises(ConfigError, match="fingerprint"):
        StreamingLoader(make_cfg(root, image_batch_size=8)).load_state_dict(state)
    with pytest.raises(ConfigError, match="world_size"):
        StreamingLoader(make_cfg(root), rank=0, world_size=2).load_state_dict(state)


def test_provenance_mismatch_is_refused(tmp_path):
    r = str(tmp_path)
    uri = write_fake_shard(
        r,
        "clips",
        "x",
        make_fake_clip_rows(4),
        fake_provenance("clips", vae={"id": "other/vae", "config_hash": "vae0"}),
    )
    cfg = make_cfg(r, sources=[SourceConfig(r, "clips")])
    with pytest.raises(ConfigError) as e:
        StreamingLoader(cfg, expected_provenance=EXPECTED)
    msg = str(e.value)
    assert "vae.id" in msg and "'fake/wan-vae'" in msg and "'other/vae'" in msg and uri in msg
    # shards that disagree with each other are refused even without an expectation
    write_fake_shard(r, "clips", "y", make_fake_clip_rows(4, prefix="y"))
    with pytest.raises(ConfigError, match="inconsistent"):
        StreamingLoader(cfg)


def test_wrong_spec_and_missing_shards_are_refused(tmp_path):
    r = str(tmp_path)
    write_fake_shard(r, "pairs", "p", make_fake_pair_rows(4))
    pair_as_clips = f"{r}/pairs/p.parquet"
    with pytest.raises(ConfigError, match="declares spec .pairs/v2., but clips readers accept"):
        StreamingLoader(make_cfg(r, sources=[SourceConfig(pair_as_clips, "clips")]))
    with pytest.raises(ConfigError, match="no clips shards"):
        StreamingLoader(make_cfg(r, sources=[SourceConfig(r, "clips")]))


def test_memory_uri_and_black_latent():
    r = f"memory://loader-{uuid.uuid4().hex}"
    write_fake_shard(
        r, "clips", "m", make_fake_clip_rows(6, prefix="m", latent_frames=5), row_group_rows=2
    )
    loader = StreamingLoader(make_cfg(r, sources=[SourceConfig(r, "clips")], num_workers=2))
    batches = epoch_batches(loader)
    assert sorted(i for b in batches for i in b["sample_id"]) == sorted(f"m-{i}" for i in range(6))
    assert batches[0]["target_latents"].shape[1:] == (4, 5, 4, 6)
    assert torch.equal(loader.black_latent, torch.tensor([-0.5, -0.4, -0.3, -0.2]))


def test_judge_thresholds_and_media_filter(tmp_path):
    r = str(tmp_path)

    def scores(i: int) -> dict:
        return {"if": [9, 8, 10, None][i % 4], "vq": 9.0, "cp": 9.5 if i < 10 else 8.0}

    write_fake_shard(r, "pairs", "s", make_fake_pair_rows(16, prefix="s", scores=scores))
    write_fake_shard(r, "pairs", "v", make_fake_pair_rows(4, prefix="v", media="video"))
    src = SourceConfig(r, "pairs", media="image", min_scores={"if": 9, "vq": 9, "cp": 9})
    batches = epoch_batches(StreamingLoader(make_cfg(r, sources=[src])))
    got = sorted(int(i[2:]) for b in batches for i in b["sample_id"])
    assert got == [i for i in range(10) if i % 4 in (0, 2)]
    videos = epoch_batches(
        StreamingLoader(make_cfg(r, sources=[SourceConfig(r, "pairs", media="video")]))
    )
    assert sorted(i for b in videos for i in b["sample_id"]) == [f"v-{i}" for i in range(4)]


def test_source_weights_repeat_rows(tmp_path):
    r = str(tmp_path)
    write_fake_shard(r, "clips", "w", make_fake_clip_rows(8, prefix="w"))
    batches = epoch_batches(
        StreamingLoader(make_cfg(r, sources=[SourceConfig(r, "clips", weight=2.0)]))
    )
    ids = Counter(i for b in batches for i in b["sample_id"])
    assert set(ids.values()) == {2} and len(ids) == 8
    rng_ids = [i for b in batches for i in b["rng_id"]]
    assert len(set(rng_ids)) == 16  # the repeat gets its own corruption stream


def test_config_from_dict_and_validation(root):
    cfg = load_config(
        DataConfig,
        base={
            "sources": [{"uri": root, "kind": "pairs", "media": "image", "min_scores": {"if": 9}}],
            "video_batch_ratio": 0.25,
        },
    )
    assert cfg.sources[0].min_scores == {"if": 9.0} and cfg.video_batch_ratio == 0.25
    with pytest.raises(ConfigError, match="min_scores"):
        load_config(
            DataConfig, base={"sources": [{"uri": root, "kind": "clips", "min_scores": {"if": 9}}]}
        )
    with pytest.raises(ConfigError, match="video_batch_ratio"):
        load_config(DataConfig, base={"video_batch_ratio": 1.5})
    with pytest.raises(ConfigError, match="sources is empty"):
        StreamingLoader(DataConfig())


def test_interleave_gives_each_step_the_global_ratio():
    from trainer.batching import interleave

    world, ratio = 4, 0.25
    seqs = [interleave(["i"] * 60, ["v"] * 20, ratio, r, world) for r in range(world)]
    for step in zip(*seqs, strict=True):  # Hermite: W * r = 1 video batch per global step
        assert step.count("v") == 1
    for seq in seqs:  # and each rank alone keeps the ratio
        assert all(abs(seq[:n].count("v") - n * ratio) <= 1 for n in range(1, 81))
    assert interleave(["i"] * 3, ["v"] * 3, 0.0, 0, 1) == ["i"] * 3 + ["v"] * 3
