"""``engine/listing.py``: the inputs table written chunk by chunk, duplicate ids as error rows,
finished inputs dropped when it is read back in small blocks (no Ray)."""

from __future__ import annotations

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.clips.columns import CLIP_COLUMNS
from pipelines.clips.list_inputs import OUTPUTS
from pipelines.engine import listing
from pipelines.engine.apply import rows_to_table
from pipelines.engine.listing import DuplicateFinder, read_part, write_inputs
from pipelines.engine.stage import schema_for

SCHEMA = schema_for(OUTPUTS, CLIP_COLUMNS)
NONE = pa.array([], pa.string())


def _chunk(ids: list[str]) -> pa.Table:
    rows = [{"video_id": v, "source_uri": f"/v/{v}.mp4", "input_rows": 1, "row_weight": 1}
            for v in ids]  # fmt: skip
    return rows_to_table(rows, SCHEMA)


def _read_all(fs, listed, done=NONE, block_rows: int = 1) -> list[pa.Table]:
    return [b for path, g, _ in listed.parts
            for b in read_part(fs, path, g, "video_id", done, block_rows)]  # fmt: skip


def test_write_inputs_streams_chunks_into_the_inputs_table(tmp_path, monkeypatch):
    """Each chunk is on disk before the next one is pulled: the driver holds one at a time."""
    monkeypatch.setattr(listing, "CHUNK_ROWS", 4)
    monkeypatch.setattr(listing, "GROUP_ROWS", 3)
    fs = fsspec.filesystem("file")
    folder = tmp_path / "_state" / "clips" / "inputs"
    on_disk: list[int] = []
    totals: list[int] = []

    def chunks():
        for k in range(3):
            on_disk.append(len(list(folder.glob("part-*.parquet"))) if folder.exists() else 0)
            yield _chunk([f"v{k}-{i}" for i in range(4)])
        yield _chunk([])  # an empty chunk is no file

    listed = write_inputs(fs, str(tmp_path), "clips", chunks(), "video_id", NONE, "list_inputs",
                          on_chunk=totals.append)  # fmt: skip
    assert on_disk == [0, 1, 2] and totals == [4, 8, 12]
    assert (listed.total, listed.todo, listed.duplicates) == (12, 12, 0)
    files = sorted(folder.glob("part-*.parquet"))
    assert [p.name for p in files] == ["part-00000.parquet", "part-00001.parquet",
                                       "part-00002.parquet"]  # fmt: skip
    assert [(p.rsplit("/", 1)[-1], g, n) for p, g, n in listed.parts] == [
        (f"part-0000{k}.parquet", g, n) for k in range(3) for g, n in ((0, 3), (1, 1))
    ]
    table = pa.concat_tables(pq.read_table(p) for p in files)
    assert table.column("row_index").to_pylist() == list(range(12))
    assert table.column("video_id").to_pylist()[4] == "v1-0"
    again = write_inputs(fs, str(tmp_path), "clips", iter([_chunk(["x"])]), "video_id", NONE, "l")
    assert again.total == 1 and len(list(folder.glob("*.parquet"))) == 1  # rewritten, not added


def test_duplicate_ids_become_error_rows_under_their_own_id(tmp_path):
    fs = fsspec.filesystem("file")
    chunks = [_chunk(["a", "b", "a"]), _chunk(["c", "b", "a"])]
    listed = write_inputs(fs, str(tmp_path), "clips", iter(chunks), "video_id", NONE, "list_inputs")
    assert (listed.total, listed.todo, listed.duplicates) == (6, 6, 3)
    rows = pa.concat_tables(_read_all(fs, listed)).to_pylist()
    got = [(r["video_id"], r["error_kind"], r["error_stage"]) for r in rows]
    assert got == [
        ("a", None, None),
        ("b", None, None),
        ("a@row2", "bad_manifest_row", "list_inputs"),
        ("c", None, None),
        ("b@row4", "bad_manifest_row", "list_inputs"),
        ("a@row5", "bad_manifest_row", "list_inputs"),
    ]
    assert rows[2]["error_message"] == "duplicate id 'a' in manifest row 2"
    assert rows[2]["error_time"] is not None and rows[0]["error_time"] is None
    assert rows[2]["source_uri"] == "/v/a.mp4" and rows[2]["input_rows"] == 1


def test_todo_counts_and_read_part_drop_the_finished_inputs(tmp_path, monkeypatch):
    monkeypatch.setattr(listing, "GROUP_ROWS", 4)
    fs = fsspec.filesystem("file")
    ids = [f"v{i}" for i in range(10)]
    done = pa.array(["v1", "v2", "v7", "elsewhere"])
    listed = write_inputs(fs, str(tmp_path), "clips", iter([_chunk(ids[:6]), _chunk(ids[6:])]),
                          "video_id", done, "list_inputs")  # fmt: skip
    assert (listed.total, listed.todo) == (10, 7)
    assert [n for _, _, n in listed.parts] == [4, 4, 2]
    blocks = _read_all(fs, listed, done, block_rows=2)
    assert [b.num_rows for b in blocks] == [2, 2, 1, 2]  # per row group: 2 (of 4), 3, 2 left
    assert [v for b in blocks for v in b.column("video_id").to_pylist()] == [
        "v0", "v3", "v4", "v5", "v6", "v8", "v9"
    ]  # fmt: skip
    assert all("row_index" not in b.column_names for b in blocks)
    assert [b.num_rows for b in _read_all(fs, listed)] == [1] * 10  # default: one input a block


def test_duplicate_finder_across_a_merge():
    f = DuplicateFinder(merge_every=3)
    first = [f.seen(f"id{i}") for i in range(7)]  # merges after 3 and 6 new ids
    assert first == [False] * 7
    assert len(f.sorted) == 6 and len(f.recent) == 1
    assert list(f.sorted) == sorted(f.sorted)
    assert all(f.seen(f"id{i}") for i in range(7))  # in the sorted array and in recent
    assert not f.seen("id7") and f.seen("id7")
    assert f.sorted.dtype.itemsize == 8  # 8 bytes an id


@pytest.mark.parametrize("merge_every", [1, 2, 1000])
def test_duplicate_finder_agrees_with_a_set(merge_every):
    f, seen = DuplicateFinder(merge_every=merge_every), set()
    for i in [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9]:
        assert f.seen(str(i)) == (str(i) in seen)
        seen.add(str(i))
