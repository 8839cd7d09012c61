"""``sama.manifests``: manifests read in chunks, a broken row a ``BadRecord`` in its place."""

from __future__ import annotations

import io
import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sama import manifests
from sama.errors import ConfigError
from sama.manifests import BadRecord, iter_records


def _all(path, fmt: str, chunk_rows: int = 8192) -> list:
    return [r for chunk in iter_records(str(path), fmt, {}, chunk_rows) for r in chunk]


def test_jsonl_in_chunks_with_broken_lines_in_place(tmp_path):
    p = tmp_path / "m.jsonl"
    lines = [json.dumps({"video": f"v{i}.mp4"}) for i in range(5)]
    lines[1] = '{"video": "broken.mp4"'
    lines[3] = "[1, 2]"
    p.write_text("\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]) + "\n")
    chunks = list(iter_records(str(p), "jsonl", {}, chunk_rows=2))
    assert [len(c) for c in chunks] == [2, 2, 1]  # the blank line is no row
    rows = [r for c in chunks for r in c]
    assert rows[0] == {"video": "v0.mp4"} and rows[4] == {"video": "v4.mp4"}
    bad = rows[1]
    assert isinstance(bad, BadRecord) and bad.row_index == 1
    assert bad.raw == '{"video": "broken.mp4"' and bad.message.startswith("line 2 is not JSON")
    assert isinstance(rows[3], BadRecord) and rows[3].row_index == 3
    assert rows[3].message == "line 5 is a JSON list, not an object"  # its line, after the blank


def test_csv_wrong_field_counts_are_bad_records(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("video,caption,id\na.mp4,first,x1\nb.mp4,too,many,fields\nc.mp4,short\n"
                 ",no video,x4\n")  # fmt: skip
    rows = _all(p, "csv")
    assert rows[0] == {"video": "a.mp4", "caption": "first", "id": "x1"}
    assert isinstance(rows[1], BadRecord) and rows[1].row_index == 1
    assert rows[1].message == "CSV row has 4 fields, the header has 3"
    assert isinstance(rows[2], BadRecord) and rows[2].row_index == 2
    assert rows[2].message == "CSV row has 2 fields, the header has 3"
    assert rows[3] == {"video": "", "caption": "no video", "id": "x4"}  # a row; empty is data


def test_csv_quoted_newlines_bom_and_chunks(tmp_path):
    p = tmp_path / "m.csv"
    body = 'video,caption\n"a.mp4","two\nlines, and a comma"\nb.mp4,"say ""hi"""\nc.mp4,x\n'
    p.write_bytes(b"\xef\xbb\xbf" + body.encode())
    chunks = list(iter_records(str(p), "csv", {}, chunk_rows=2))
    assert [len(c) for c in chunks] == [2, 1]
    rows = [r for c in chunks for r in c]
    assert rows[0] == {"video": "a.mp4", "caption": "two\nlines, and a comma"}
    assert rows[1]["caption"] == 'say "hi"' and rows[2]["video"] == "c.mp4"


def test_records_stream_and_never_read_the_whole_file(tmp_path, monkeypatch):
    p = tmp_path / "big.jsonl"
    p.write_text("".join(json.dumps({"video": f"v{i:06d}.mp4", "caption": "x" * 40}) + "\n"
                         for i in range(20_000)))  # fmt: skip
    size = p.stat().st_size
    read = []

    class Counting(io.FileIO):
        def readinto(self, b):
            n = super().readinto(b)
            read.append(n or 0)
            return n

    monkeypatch.setattr(manifests, "_open", lambda uri, so: io.BufferedReader(Counting(uri)))
    records = iter_records(str(p), "jsonl", {}, chunk_rows=100)
    first = next(records)
    assert len(first) == 100 and first[0]["video"] == "v000000.mp4"
    assert sum(read) < size / 10, (sum(read), size)
    assert sum(len(c) for c in records) == 19_900


def test_parquet_in_record_batches(tmp_path):
    p = tmp_path / "m.parquet"
    pq.write_table(pa.table({"video": [f"v{i}" for i in range(5)], "n": list(range(5))}), p,
                   row_group_size=2)  # fmt: skip
    chunks = list(iter_records(str(p), "parquet", {}, chunk_rows=2))
    assert [len(c) for c in chunks] == [2, 2, 1]
    assert chunks[2] == [{"video": "v4", "n": 4}]


def test_json_shapes(tmp_path):
    cases = {
        "list": ([{"video": "a"}, 3], [{"video": "a"}, "item 1 is a JSON int, not an object"]),
        "wrapped": ({"data": [{"video": "a"}], "version": 2}, [{"video": "a"}]),
        "mapping": ({"x1": {"video": "a"}, "x2": {"video": "b", "id": "own"}},
                    [{"id": "x1", "video": "a"}, {"video": "b", "id": "own"}]),
    }  # fmt: skip
    for name, (obj, want) in cases.items():
        p = tmp_path / f"{name}.json"
        p.write_text(json.dumps(obj))
        got = [r.message if isinstance(r, BadRecord) else r for r in _all(p, "json")]
        assert got == want, name
    lines = tmp_path / "lines.json"
    lines.write_text('{"video": "a"}\n{"video": "b"}\n')  # JSON lines named .json
    assert _all(lines, "json") == [{"video": "a"}, {"video": "b"}]
    scalar = tmp_path / "scalar.json"
    scalar.write_text("3")
    with pytest.raises(ConfigError, match="holds a JSON int, not rows"):
        _all(scalar, "json")


def test_webdataset_samples(tmp_path):
    shard = tmp_path / "000.tar"
    with tarfile.open(shard, "w") as tar:
        for name, data in [("s1.jpg", b"img"), ("s1.json", b'{"instruction": "x"}'),
                           ("s2.jpg", b"img2"), ("s2.json", b"{broken")]:  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    rows = _all(shard, "webdataset")
    assert rows[0] == {"__key__": "000/s1", "__url__": str(shard), "json": {"instruction": "x"},
                       "jpg": f"tar://s1.jpg::{shard}"}  # fmt: skip
    assert isinstance(rows[1], BadRecord) and "its .json member is not JSON" in rows[1].message


def test_unreadable_manifests_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        _all(tmp_path / "nope.jsonl", "jsonl")
    with pytest.raises(ConfigError, match="unknown manifest format 'xml'"):
        _all(tmp_path / "m.xml", "xml")
    binary = tmp_path / "m.csv"
    binary.write_bytes(b"video\n\xff\xfe\x00garbage\n")
    with pytest.raises(ConfigError, match="cannot be read as csv"):
        _all(binary, "csv")
    (tmp_path / "bad.tar").write_bytes(b"not a tar")
    with pytest.raises(ConfigError, match="not a readable tar shard"):
        _all(tmp_path / "bad.tar", "webdataset")
