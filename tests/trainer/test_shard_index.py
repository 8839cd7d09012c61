"""The shard index and the shard cache: the published layout (local and ``hf://`` through a local
Hub server), a node-local cache of fetched shards and of the index, v1 and v2 shards, footers
read in parallel, and hostile shards refused at start-up with one line per problem."""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

import pytest

from sama.errors import ConfigError
from tests.fakes import fake_provenance, make_fake_clip_rows, make_fake_pair_rows, write_fake_shard
from tests.hostile import CASES, write_hostile_set
from tests.hub_server import LocalHub, serving_hub
from trainer.data import DataConfig, SourceConfig, StreamingLoader
from trainer.shard_cache import ShardCache


@pytest.fixture
def local_hub(monkeypatch):
    with serving_hub(monkeypatch) as server:
        yield server


def push(hub: LocalHub, folder: Path, repo: str = "me/ds") -> str:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.url)
    api.create_repo(repo, repo_type="dataset", exist_ok=True)
    api.upload_folder(repo_id=repo, folder_path=folder, repo_type="dataset", commit_message="x")
    return f"hf://datasets/{repo}"


def write_root(root: Path, subdir: str = "") -> Path:
    """6 shards: clips in two versions (v1 and v2 mixed: the trainer reads both), pairs."""
    r = str(root)
    write_fake_shard(r, "clips", "a", make_fake_clip_rows(6, prefix="ca"), subdir=subdir)
    old = fake_provenance("clips", version="v1")
    write_fake_shard(r, "clips", "b", make_fake_clip_rows(5, prefix="cb"), old, subdir=subdir)
    for i in range(4):
        rows = make_fake_pair_rows(4, prefix=f"p{i}", seed=i)
        write_fake_shard(r, "pairs", f"p{i}", rows, subdir=subdir)
    return root


def cfg(root: str, **kw) -> DataConfig:
    base = dict(
        sources=[SourceConfig(root, "clips"), SourceConfig(root, "pairs")],
        image_batch_size=4,
        video_batch_size=2,
        num_workers=0,
        seed=3,
    )
    base.update(kw)
    return DataConfig(**base)


def epoch_ids(loader: StreamingLoader) -> list[list[str]]:
    return [b["sample_id"] for b in itertools.islice(loader, loader.batches_in_epoch())]


def test_published_layout_in_numbered_folders_reads_like_the_build_layout(tmp_path):
    built = write_root(tmp_path / "built")
    published = tmp_path / "published"
    for kind in ("clips", "pairs"):
        for i, shard in enumerate(sorted((built / kind).glob("*.parquet"))):
            dst = published / "data" / kind / f"{i // 2:04d}" / shard.name  # as publish splits
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(shard, dst)
    want = epoch_ids(StreamingLoader(cfg(str(built))))
    assert len({i for b in want for i in b}) == 6 + 5 + 16
    assert epoch_ids(StreamingLoader(cfg(str(published)))) == want


def test_parallel_footers_give_the_same_index(tmp_path):
    root = str(write_root(tmp_path / "r"))
    one = StreamingLoader(cfg(root, index_workers=1))
    many = StreamingLoader(cfg(root, index_workers=8))
    assert one.fingerprint == many.fingerprint and epoch_ids(one) == epoch_ids(many)


def test_hf_root_with_a_node_cache_fetches_each_shard_once(tmp_path, local_hub):
    folder = write_root(tmp_path / "pub", subdir="data/")
    uri = push(local_hub, folder)
    want = epoch_ids(StreamingLoader(cfg(str(folder))))
    cache_dir = tmp_path / "cache"
    first = StreamingLoader(cfg(uri, cache_dir=str(cache_dir), num_workers=2))
    assert [s.uri for s in first.shards][0].startswith("hf://datasets/me/ds/data/clips/")
    assert epoch_ids(first) == want
    assert first.cache.fetched == 6 and len(list((cache_dir / "shards").iterdir())) == 6
    reads = local_hub.calls["resolve"]
    again = StreamingLoader(cfg(uri, cache_dir=str(cache_dir)))  # another rank / a resumed run
    assert again.fingerprint == first.fingerprint
    assert epoch_ids(again) == want
    assert local_hub.calls["resolve"] == reads  # index and shards from the cache: no download
    assert again.cache.fetched == 0


def test_cache_stays_under_its_bound(tmp_path, local_hub):
    folder = write_root(tmp_path / "pub", subdir="data/")
    uri = push(local_hub, folder)
    biggest = max(p.stat().st_size for p in folder.rglob("*.parquet"))
    loader = StreamingLoader(
        cfg(uri, cache_dir=str(tmp_path / "c"), cache_max_gb=2.5 * biggest / 2**30)
    )
    plain = StreamingLoader(cfg(str(folder)))
    for _ in range(2):  # the second epoch needs shards evicted during the first: fetched again
        assert epoch_ids(loader) == epoch_ids(plain)
        sizes = [p.stat().st_size for p in (tmp_path / "c" / "shards").iterdir()]
        assert len(sizes) < 6 and sum(sizes) <= 2.5 * biggest
    assert loader.cache.fetched > 6


def test_cache_is_atomic_and_shared(tmp_path):
    import fsspec

    src = tmp_path / "remote.parquet"
    src.write_bytes(b"x" * 1000)
    mem = fsspec.filesystem("memory")
    mem.pipe("/cache-test/s.parquet", src.read_bytes())
    try:
        cache = ShardCache(tmp_path / "c", 1 << 20)
        (tmp_path / "c" / "shards" / ".tmp-999999999-dead-leftover").write_bytes(b"partial")
        a = cache.local(mem, "/cache-test/s.parquet", "memory://cache-test/s.parquet", 1000, "v1")
        b = ShardCache(tmp_path / "c", 1 << 20).local(
            mem, "/nope", "memory://cache-test/s.parquet", 1000, "v1"
        )  # a second process reuses it
        assert a == b and Path(a).read_bytes() == src.read_bytes()
        assert [p.name.startswith(".tmp-") for p in (tmp_path / "c" / "shards").iterdir()] == [
            False
        ]
        with pytest.raises(OSError, match="expected 999"):
            cache.local(mem, "/cache-test/s.parquet", "memory://cache-test/s.parquet", 999, "v2")
    finally:
        mem.rm("/cache-test", recursive=True)


def test_hostile_shards_are_refused_at_start_up_one_line_each(tmp_path):
    root = tmp_path / "hostile"
    cases = write_hostile_set(root, fake_provenance("clips"))
    write_fake_shard(str(root), "clips", "good", make_fake_clip_rows(4, prefix="good"))
    with pytest.raises(ConfigError) as err:
        StreamingLoader(cfg(str(root), sources=[SourceConfig(str(root), "clips")]))
    text = str(err.value)
    assert f"in {len(cases)} of {len(cases) + 1} shard(s)" in text
    lines = text.splitlines()[1:]
    for case, needle in CASES.items():
        (line,) = [x for x in lines if f"clips/{case}.parquet" in x]
        assert needle in line, (case, line)
    assert "good.parquet" not in text
    assert os.path.getsize(root / "clips" / "bomb.parquet") < 1 << 20  # small file, 4 GiB inside
