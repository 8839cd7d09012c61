"""Pair manifests (sama.pairs.manifest): formats on fsspec, column mapping, bad rows as data."""

from __future__ import annotations

import csv
import io
import json
import uuid

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datasets_spec.provenance import stable_hash
from sama.config import load_config
from sama.errors import ConfigError, ErrorKind
from sama.pairs.fields import get_field, join_uri
from sama.pairs.manifest import BadRow, PairColumns, PairItem, PairManifestConfig, read_pairs

ROWS = [
    {
        "id": "p1",
        "source": "src/a.mp4",
        "target": "tgt/a.mp4",
        "instruction": "Make it blue",
        "score_if": "",
        "note": "x",
    },
    {
        "id": "p2",
        "source": "/abs/b.png",
        "target": "s3://bucket/b_edit.png",
        "instruction": "  Add a   hat ",
        "score_if": "9",
        "note": "y",
    },
]


@pytest.fixture
def mem():
    """A fresh ``memory://`` folder, removed afterwards."""
    fs = fsspec.filesystem("memory")
    name = f"pairs-{uuid.uuid4().hex}"
    yield f"memory://{name}"
    if fs.exists(f"/{name}"):
        fs.rm(f"/{name}", recursive=True)


def _path(uri: str) -> str:
    """``memory://x`` and ``memory:///x`` name the same object."""
    return fsspec.core.url_to_fs(uri)[1]


def _put(uri: str, data: bytes | str) -> str:
    with fsspec.open(uri, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return uri


def write_manifest(uri: str, rows: list[dict], fmt: str) -> str:
    """Write ``rows`` as ``fmt`` to ``uri`` (CSV/Parquet: every value a string, like real CSVs)."""
    if fmt == "jsonl":
        return _put(uri, "".join(json.dumps(r) + "\n" for r in rows))
    if fmt == "json":
        return _put(uri, json.dumps(rows))
    if fmt == "csv":
        keys = list(dict.fromkeys(k for r in rows for k in r))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
        return _put(uri, buf.getvalue())
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    return _put(uri, sink.getvalue())


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json", "parquet"])
def test_every_format_reads_the_same_pairs(mem, fmt):
    uri = write_manifest(f"{mem}/data/pairs.{fmt}", ROWS, fmt)
    items = read_pairs(PairManifestConfig(uri=uri))
    assert all(isinstance(i, PairItem) for i in items)
    a, b = items
    assert (a.pair_id, b.pair_id) == ("p1", "p2")
    # relative paths resolve against the manifest's folder; absolute ones stay as they are
    assert a.source_uri == f"{mem}/data/src/a.mp4"
    assert a.target_uri == f"{mem}/data/tgt/a.mp4"
    assert (b.source_uri, b.target_uri) == ("/abs/b.png", "s3://bucket/b_edit.png")
    assert b.instruction == "Add a hat"  # whitespace normalised
    assert (a.media_type, b.media_type) == ("video", "image")  # from the extension
    assert a.scores is None and b.scores == {"if": 9.0}
    assert a.corpus == b.corpus == "pairs"  # no preset: the manifest's stem
    assert a.metadata == {"note": "x"} and a.row_index == 0 and b.row_index == 1
    assert a.input_uri == f"{uri}#0"
    assert a.to_row()["source_uri"] == a.source_uri and a.drop_first_frames == 0


def test_pair_id_is_a_stable_hash_of_uris_and_instruction(mem):
    rows = [{k: v for k, v in r.items() if k != "id"} for r in ROWS]
    got = {}
    for fmt in ("csv", "jsonl", "parquet"):
        uri = write_manifest(f"{mem}/{fmt}/pairs.{fmt}", rows, fmt)
        got[fmt] = [i.pair_id for i in read_pairs(PairManifestConfig(uri=uri))]
    b = read_pairs(PairManifestConfig(uri=f"{mem}/csv/pairs.csv"))[1]
    assert got["jsonl"][1] == got["csv"][1] == got["parquet"][1]
    assert got["jsonl"][1] == stable_hash([b.source_uri, b.target_uri, "Add a hat"])
    assert len(got["csv"][1]) == 16 and got["csv"][0] != got["csv"][1]
    changed = [dict(rows[1], instruction="Add a red hat")]
    uri = write_manifest(f"{mem}/other/pairs.jsonl", changed, "jsonl")
    assert read_pairs(PairManifestConfig(uri=uri))[0].pair_id != got["jsonl"][1]


def test_columns_are_mappable_with_field_paths(mem):
    rows = [
        {
            "uid": "",
            "key": "k7",
            "src_video": "clip.mp4",
            "edited": {"path": "clip_edit.mp4"},
            "conversations": [
                {"from": "human", "value": "<image>\nTurn it to night"},
                {"from": "gpt", "value": "<image>"},
            ],
            "judge": {"if": 8, "vq": "9.5"},
            "kind": "video",
        }
    ]
    uri = write_manifest(f"{mem}/m.jsonl", rows, "jsonl")
    cols = PairColumns(
        source="src_video",
        target="edited.path",
        instruction="conversations[from=human].value",
        id="uid|key",
        media_type="kind",
        scores={"if": "judge.if", "vq": "judge.vq"},
    )
    cfg = PairManifestConfig(uri=uri, columns=cols, instruction_strip=["<image>"])
    (item,) = read_pairs(cfg)
    assert item.pair_id == "k7"  # the empty uid falls through to key
    assert item.target_uri == f"{mem}/clip_edit.mp4"
    assert item.instruction == "Turn it to night"
    assert item.scores == {"if": 8.0, "vq": 9.5} and item.media_type == "video"
    # fields read whole leave the metadata; containers read into stay (they may hold more)
    assert set(item.metadata) == {"edited", "conversations", "judge"}


def test_field_paths():
    rec = {"a.b": 1, "a": {"b": 2}, "l": [{"k": "x", "v": 3}, {"k": "y", "v": 4}], "e": " "}
    assert get_field(rec, "a.b") == 1  # a literal key wins
    assert get_field(rec, "l[-1].v") == 4 and get_field(rec, "l[k=x].v") == 3
    assert get_field(rec, "l[5].v") is None and get_field(rec, "l[k=z].v") is None
    assert get_field(rec, "e|missing|l[0].k") == "x"  # first non-empty alternative
    assert join_uri("memory://r/a", "../b/c.mp4") == "memory://r/b/c.mp4"
    assert join_uri("memory:///r/a", "x.png") == "memory:///r/a/x.png"
    assert join_uri("/data/m", "./v/x.mp4") == "/data/m/v/x.mp4"
    assert join_uri("https://cdn/x/", "images/1.png") == "https://cdn/x/images/1.png"
    assert join_uri("/data", "tar://k.jpg::memory://s.tar") == "tar://k.jpg::memory://s.tar"


def test_bad_rows_are_returned_not_raised(mem):
    good = {"id": "ok", "source": "a.mp4", "target": "b.mp4", "instruction": "Do it"}
    lines = [
        json.dumps(good),
        json.dumps({"id": "no_target", "source": "a.mp4", "instruction": "Do it"}),
        json.dumps({"id": "empty", "source": "a.mp4", "target": "b.mp4", "instruction": "  "}),
        '{"id": "broken", "source": ',
        json.dumps(
            {
                "id": "score",
                "source": "a.mp4",
                "target": "b.mp4",
                "instruction": "x",
                "score_vq": "high",
            }
        ),
        json.dumps(dict(good, target="c.mp4")),  # duplicate id
        json.dumps(
            {
                "id": "media",
                "source": "a.mp4",
                "target": "b.mp4",
                "instruction": "x",
                "media_type": "audio",
            }
        ),
        "[1, 2]",
        json.dumps({"id": "last", "source": "a.mp4", "target": "d.mp4", "instruction": "Go"}),
    ]
    uri = _put(f"{mem}/m.jsonl", "\n".join(lines) + "\n")
    items = read_pairs(PairManifestConfig(uri=uri))
    assert [type(i).__name__ for i in items] == [
        "PairItem",
        "BadRow",
        "BadRow",
        "BadRow",
        "BadRow",
        "BadRow",
        "BadRow",
        "BadRow",
        "PairItem",
    ]
    bad = {i.row_index: i for i in items if isinstance(i, BadRow)}
    assert "no target (target)" in bad[1].message and bad[1].item_id == "no_target"
    assert "empty instruction" in bad[2].message
    assert "not JSON" in bad[3].message and bad[3].raw.startswith('{"id": "broken"')
    assert "'vq'" in bad[4].message and "high" in bad[4].message
    assert "duplicate pair id 'ok'" in bad[5].message and bad[5].item_id == "ok@row5"
    assert "media_type" in bad[6].message
    assert "not an object" in bad[7].message and bad[7].item_id  # still has an id to file
    for b in bad.values():
        assert b.error().kind == ErrorKind.BAD_MANIFEST_ROW and b.input_uri.startswith(uri)
    assert items[-1].row_index == 8 and items[-1].pair_id == "last"


def test_a_ragged_csv_row_is_a_bad_row(mem):
    text = "source,target,instruction\na.mp4,b.mp4,Do it\nc.mp4,d.mp4,Do,it,twice\ne.mp4,,x\n"
    items = read_pairs(PairManifestConfig(uri=_put(f"{mem}/m.csv", text)))
    assert isinstance(items[0], PairItem)
    assert isinstance(items[1], BadRow) and "5 fields, the header has 3" in items[1].message
    assert isinstance(items[2], BadRow) and "no target" in items[2].message


def test_a_column_no_row_has_is_a_config_error(mem):
    uri = write_manifest(
        f"{mem}/m.jsonl", [{"video": "a.mp4", "edited": "b.mp4", "instruction": "x"}], "jsonl"
    )
    with pytest.raises(ConfigError, match=r"columns.source='source'.*'edited', 'instruction'"):
        read_pairs(PairManifestConfig(uri=uri))
    cols = PairColumns(source="video", target="edited")
    assert isinstance(read_pairs(PairManifestConfig(uri=uri, columns=cols))[0], PairItem)


def test_glob_limit_base_uri_and_corpus(mem):
    write_manifest(f"{mem}/m/b.jsonl", ROWS[:1], "jsonl")
    write_manifest(f"{mem}/m/a.jsonl", [dict(ROWS[1], id="p3")], "jsonl")
    items = read_pairs(
        PairManifestConfig(uri=f"{mem}/m/*.jsonl", base_uri="../media", corpus="mine")
    )
    assert [i.pair_id for i in items] == ["p3", "p1"]  # sorted files, global row index
    assert [i.row_index for i in items] == [0, 1] and {i.corpus for i in items} == {"mine"}
    assert _path(items[1].source_uri) == _path(f"{mem}/media/src/a.mp4")
    one = read_pairs(
        PairManifestConfig(uri=f"{mem}/m/*.jsonl", limit=1, base_uri="memory://elsewhere/x")
    )
    assert len(one) == 1 and one[0].source_uri == "/abs/b.png"
    with pytest.raises(ConfigError, match="matches no file"):
        read_pairs(PairManifestConfig(uri=f"{mem}/none/*.csv"))


def test_config_is_validated_and_loads_with_overrides(mem):
    with pytest.raises(ConfigError, match="pairs.uri is empty"):
        PairManifestConfig().validate()
    with pytest.raises(ConfigError, match="unknown pairs preset 'nope'"):
        PairManifestConfig(uri="x.csv", preset="nope").validate()
    with pytest.raises(ConfigError, match="limit"):
        PairManifestConfig(uri="x.csv", limit=-1).validate()
    with pytest.raises(ConfigError, match="pairs.format"):
        read_pairs(PairManifestConfig(uri=_put(f"{mem}/m.txt", "a,b\n")))
    with pytest.raises(ConfigError, match="not a manifest file"):
        read_pairs(PairManifestConfig(uri=f"{mem}/missing.csv"))
    cfg = load_config(
        PairManifestConfig,
        overrides=[f"uri={mem}/m.csv", "columns.source=video", "drop_first_frames=4", "format=csv"],
    )
    assert cfg.columns.source == "video" and cfg.columns.target == "target"
    assert cfg.drop_first_frames == 4
    with pytest.raises(ConfigError, match="unknown config key 'columns.sourc'"):
        load_config(PairManifestConfig, overrides=["uri=x.csv", "columns.sourc=video"])
    with pytest.raises(ConfigError, match="format"):
        load_config(PairManifestConfig, overrides=["uri=x.csv", "format=xml"])
