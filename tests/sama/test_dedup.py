"""Near-duplicate clips from SigLIP global anchor tokens (sama.dedup).

The embeddings come from the real anchor encoder (``SiglipAnchorEncoder``) with the tiny
random-weight SigLIP of ``sama.encoders.tiny``: no real weights can be downloaded here. On these
clips its global tokens do separate the cases (re-encodes of one clip >= 0.999 cosine, other
footage <= 0.94; another moment of the same static box.mp4 scene, 5 s later, scored 0.996: a
near-duplicate at any threshold below that), so the test proves the algorithm and its plumbing
(token 64 of each anchor, faiss search, the keep rule, determinism) on real pixels; it does
NOT measure the threshold's precision/recall for the real so400m SigLIP, which must be measured
where its weights exist.
"""

from __future__ import annotations

import numpy as np
import pytest

from sama.dedup import GLOBAL_TOKEN, DedupConfig, clip_embedding, find_duplicates
from sama.errors import ConfigError
from sama.media import write_video
from sama.testing.footage import footage
from sama.video.buckets import resize_crop
from sama.video.decode import iter_frames

SIZE = (320, 180)
OTHERS = [("cup", 80), ("vtest", 100), ("carphone", 10), ("megamind", 30),
          ("bigbuckbunny_clip", 20), ("tree", 5)]  # fmt: skip


def _clip(name: str, start: int, n: int = 9) -> np.ndarray:
    return np.stack([resize_crop(f, SIZE) for f in iter_frames(str(footage(name)), start, n)])


@pytest.fixture(scope="module")
def embeddings(tmp_path_factory) -> dict[str, np.ndarray]:
    """clip id -> embedding; ``box-*`` are the same 9 frames of box.mp4 re-encoded 4 ways."""
    from sama.encoders.siglip import SiglipAnchorEncoder
    from sama.encoders.tiny import make_tiny_models, tiny_encoder_configs

    root = tmp_path_factory.mktemp("dedup")
    make_tiny_models(root / "models", seed=0)
    encoder = SiglipAnchorEncoder.load(tiny_encoder_configs(root / "models", "cpu")["siglip"])
    base = _clip("box", 100)
    clips = {"box-orig": base}
    for tag, size, options in (("crf35", SIZE, {"crf": "35"}), ("crf18", SIZE, {"crf": "18"}),
                               ("150kbps", SIZE, {"b": "150k"}), ("half", (160, 90), {"crf": "28"})):  # fmt: skip
        frames = base if size == SIZE else resize_crop(base, size)
        path = write_video(root / f"{tag}.mp4", frames, fps=25, options=options)
        clips[f"box-{tag}"] = np.stack(list(iter_frames(str(path), backend="pyav")))
    for name, start in OTHERS:
        clips[f"{name}@{start}"] = _clip(name, start)
    out = {}
    for cid, frames in clips.items():
        tokens_AKD = encoder.encode(frames[[0, 8]]).float().numpy()  # two anchor frames
        assert tokens_AKD.shape[1] == GLOBAL_TOKEN + 1
        out[cid] = clip_embedding(tokens_AKD)
    return out


def test_reencodes_are_duplicates_of_one_kept_clip_others_are_not(embeddings):
    ids = list(embeddings)
    rows = find_duplicates(ids, np.stack([embeddings[c] for c in ids]))
    assert [(r.clip_id, r.duplicate_of) for r in rows] == [
        ("box-crf18", "box-150kbps"), ("box-crf35", "box-150kbps"), ("box-half", "box-150kbps"),
        ("box-orig", "box-150kbps"),
    ]  # fmt: skip
    assert all(r.similarity >= 0.999 for r in rows)


def test_same_result_in_any_order_and_priority_picks_the_kept_clip(embeddings):
    ids = list(embeddings)
    emb = np.stack([embeddings[c] for c in ids])
    rng = np.random.default_rng(0)
    first = find_duplicates(ids, emb)
    for _ in range(3):
        perm = rng.permutation(len(ids))
        assert find_duplicates([ids[i] for i in perm], emb[perm]) == first
    prio = [2.0 if c == "box-orig" else 1.0 for c in ids]  # e.g. the highest resolution
    kept = {r.duplicate_of for r in find_duplicates(ids, emb, priority=prio)}
    assert kept == {"box-orig"}


def test_precision_recall_over_thresholds(embeddings):
    """Pairs (a, b) predicted duplicates vs truth (both box re-encodes); printed for the docs."""
    ids = list(embeddings)
    emb = np.stack([embeddings[c] for c in ids])
    truth = {c for c in ids if c.startswith("box-")}
    sim = emb @ emb.T
    copies = [i for i, c in enumerate(ids) if c in truth]
    others = [i for i, c in enumerate(ids) if c not in truth]
    lowest_copy, highest_other = (
        sim[np.ix_(copies, copies)].min(),
        sim[np.ix_(copies, others)].max(),
    )
    print(
        f"\ncosine: re-encodes >= {lowest_copy:.4f}, re-encode vs other footage <= {highest_other:.4f}"
    )
    assert lowest_copy >= 0.999 and highest_other <= 0.94
    for threshold in (0.9, 0.95, 0.99, 0.999):
        rows = find_duplicates(ids, emb, DedupConfig(threshold=threshold))
        marked = {r.clip_id for r in rows} | {r.duplicate_of for r in rows}
        tp = len(marked & truth)
        precision = tp / len(marked) if marked else 1.0
        print(f"threshold {threshold}: marked {sorted(marked)} precision {precision:.2f} "
              f"recall {tp / len(truth):.2f}")  # fmt: skip
        if threshold >= 0.95:
            assert marked == truth


def test_ivf_index_finds_planted_duplicates():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(3000, 64)).astype(np.float32)
    copies = base[:50] + rng.normal(scale=0.05, size=(50, 64)).astype(np.float32)
    ids = [f"c{i:05d}" for i in range(3000)] + [f"d{i:05d}" for i in range(50)]
    emb = np.concatenate([base, copies])
    cfg = DedupConfig(threshold=0.98, index="ivf", nprobe=8)
    rows = find_duplicates(ids, emb, cfg)
    assert {(r.clip_id, r.duplicate_of) for r in rows} == {
        (f"d{i:05d}", f"c{i:05d}") for i in range(50)
    }
    assert "IndexIVFFlat" in cfg.method(len(ids)) and "IndexFlatIP" in DedupConfig().method(10)


def test_bad_inputs():
    with pytest.raises(ValueError, match="unique"):
        find_duplicates(["a", "a"], np.ones((2, 4)))
    with pytest.raises(ValueError, match="A x 65 x D"):
        clip_embedding(np.ones((1, 10, 4)))
    assert find_duplicates([], np.zeros((0, 4))) == []
    for change in ({"threshold": 0.0}, {"neighbours": 1}, {"index": "hnsw"}, {"nprobe": 0}):
        with pytest.raises(ConfigError, match="dedup."):
            DedupConfig(**change).validate()
