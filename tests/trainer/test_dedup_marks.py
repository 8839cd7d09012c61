"""The loader leaves out the clips a root's dedup table marks (``data.skip_duplicates``), for a
built root, the published folder and ``hf://`` (a local Hub server); the index cache follows
the table; a broken table is refused with the fix; the switch keeps every clip."""

from __future__ import annotations

import shutil

import pytest

from pipelines.dataset.dedup import DedupRun, run_dedup
from pipelines.engine.config import EngineConfig
from pipelines.publish.hub import plan_publish, write_folder
from sama.dedup import DedupConfig
from sama.errors import ConfigError
from tests.pipelines.dataset.corpus import COPIES, OTHERS, built_root, clip_id
from trainer.config import TrainDataConfig
from trainer.data import DataConfig, SourceConfig, StreamingLoader

ALL = sorted(clip_id(v) for v in (*COPIES, *OTHERS))
KEPT = sorted(set(ALL) - {clip_id("box_crf35"), clip_id("box_small")})


def _dedup(root, threshold: float = 0.95, overwrite: bool = False) -> None:
    run = DedupRun(DedupConfig(threshold=threshold), EngineConfig(executor="local"), overwrite)
    run_dedup(str(root), run, progress=False)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("marks") / "dataset"
    shutil.copytree(built_root(tmp_path_factory), out)
    _dedup(out)
    return out


def epoch_ids(uri: str, **kw) -> tuple[list[str], StreamingLoader]:
    cfg = DataConfig(sources=[SourceConfig(uri=uri, kind="clips")], num_workers=0,
                     video_batch_size=1, load_text_embeds=False, **kw)  # fmt: skip
    loader = StreamingLoader(cfg)
    it = iter(loader)
    ids = [i for _ in range(loader.batches_in_epoch(0)) for i in next(it)["sample_id"]]
    return sorted(ids), loader


def test_marked_clips_are_skipped_and_the_switch_keeps_them(root, capsys):
    ids, loader = epoch_ids(str(root))
    assert ids == KEPT and loader.duplicates_skipped == 2
    assert "data: skipped 2 clips marked as near-duplicates" in capsys.readouterr().err
    ids, loader = epoch_ids(str(root), skip_duplicates=False)
    assert ids == ALL and loader.duplicates_skipped == 0
    assert "data.skip_duplicates=false: training on every clip" in capsys.readouterr().err
    data = TrainDataConfig(root=str(root), skip_duplicates=False).expanded(0)
    assert data.sources[0].uri == str(root) and data.skip_duplicates is False


def test_the_index_cache_follows_the_table(root, tmp_path):
    copy = tmp_path / "dataset"
    shutil.copytree(root, copy)
    cache = str(tmp_path / "cache")
    assert epoch_ids(str(copy), cache_dir=cache)[0] == KEPT
    assert epoch_ids(str(copy), cache_dir=cache)[0] == KEPT  # from the cached index
    _dedup(copy, threshold=0.9999, overwrite=True)  # a table that marks nothing
    ids, loader = epoch_ids(str(copy), cache_dir=cache)
    assert ids == ALL and loader.duplicates_skipped == 0


def test_a_broken_table_is_refused_with_the_fix(root, tmp_path):
    copy = tmp_path / "dataset"
    shutil.copytree(root, copy)
    (table,) = copy.glob("dedup/*.parquet")
    shutil.copy(next(copy.glob("errors/*.parquet")), table)  # an errors/v1 file in dedup/
    with pytest.raises(ConfigError, match="dedup table .* is refused: declares 'errors/v1'.*"
                       "data.skip_duplicates=false"):  # fmt: skip
        epoch_ids(str(copy))
    assert epoch_ids(str(copy), skip_duplicates=False)[0] == ALL


def test_published_folder_and_hf_root_skip_them_too(root, tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    from tests.hub_server import serving_hub

    folder = write_folder(plan_publish(str(root), "me/dd"), tmp_path / "repo")
    assert (folder / "data" / "dedup").is_dir()
    assert epoch_ids(str(folder))[0] == KEPT
    with serving_hub(monkeypatch) as server:
        api = HfApi(endpoint=server.url)
        api.create_repo("me/dd", repo_type="dataset")
        api.upload_folder(repo_id="me/dd", folder_path=folder, repo_type="dataset")
        ids, loader = epoch_ids("hf://datasets/me/dd", cache_dir=str(tmp_path / "cache"))
        assert ids == KEPT and loader.duplicates_skipped == 2
