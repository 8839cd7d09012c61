"""``sama.confine``: what a manifest's entries may name (allowed roots and schemes)."""

from __future__ import annotations

import os

import pytest

from sama.confine import Confinement, resolve, split


def test_split_normalises_local_paths_and_urls():
    assert split("/data//videos/../a.mp4") == ("file", "", "/data/a.mp4")
    assert split("//x/y") == ("file", "", "/x/y")
    assert split("file:///data/./a.mp4") == ("file", "", "/data/a.mp4")
    assert split("S3://Bucket/k/../v.mp4") == ("s3", "bucket", "/v.mp4")
    assert split("https://user:pw@Host:8080/a/b") == ("https", "host:8080", "/a/b")
    assert split("gs://bucket") == ("gs", "bucket", "/")


def test_the_default_is_the_manifests_own_folder_and_scheme(tmp_path):
    local = Confinement.for_manifest(str(tmp_path / "m.jsonl"), [], [])
    assert local == Confinement((str(tmp_path),), ("file",))
    rel = Confinement.for_manifest("m.csv", [], [])
    assert rel.roots == (os.getcwd(),)
    s3 = Confinement.for_manifest("s3://bucket/lists/m.jsonl", [], [])
    assert s3 == Confinement(("s3://bucket/lists",), ("s3",))
    explicit = Confinement.for_manifest(
        "s3://bucket/lists/m.jsonl", ["s3://media/"], ["S3", "https"]
    )
    assert explicit == Confinement(("s3://media/",), ("s3", "https"))


def _check(manifest: str, entry: str, roots=(), schemes=()) -> str | None:
    c = Confinement.for_manifest(manifest, list(roots), list(schemes))
    scheme, host, path = split(manifest)
    base = (
        os.path.dirname(path) if scheme == "file" else f"{scheme}://{host}{os.path.dirname(path)}"
    )
    return c.check(resolve(base, entry, scheme == "file"))


@pytest.mark.parametrize(
    "entry",
    ["a.mp4", "sub/b.mp4", "./sub/../c.mp4", "/data/lists/d.mp4", "file:///data/lists/e.mp4"],
)
def test_entries_under_the_manifests_folder_are_allowed(entry):
    assert _check("/data/lists/m.jsonl", entry) is None


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("../../etc/passwd", "outside the allowed roots"),
        ("/home/me/.aws/credentials", "outside the allowed roots"),
        ("/data/lists-evil/x.mp4", "outside the allowed roots"),  # a prefix is not a folder
        ("file:///etc/shadow", "outside the allowed roots"),
        ("http://169.254.169.254/latest/meta-data/", "uses scheme 'http'"),
        ("s3://bucket/lists/x.mp4", "uses scheme 's3'"),
    ],
)
def test_entries_outside_are_refused_naming_the_fields_to_change(entry, why):
    msg = _check("/data/lists/m.jsonl", entry)
    assert msg is not None and why in msg
    assert ("input.allowed_roots" if "roots" in why else "input.allowed_schemes") in msg


def test_remote_manifests_are_confined_to_their_bucket_and_prefix():
    m = "s3://bucket/lists/m.jsonl"
    assert _check(m, "clips/a.mp4") is None
    assert _check(m, "s3://bucket/lists/b.mp4") is None
    assert "outside" in _check(m, "../private/x.mp4")
    assert "outside" in _check(m, "/other/x.mp4")  # absolute key in the same bucket
    assert "outside" in _check(m, "s3://other-bucket/lists/x.mp4")
    assert "outside" in _check(m, "s3://bucket/lists/../../x.mp4")
    assert _check(m, "https://cdn.example/v.mp4", roots=["https://cdn.example/"],
                  schemes=["https"]) is None  # fmt: skip
    assert "scheme 'file'" in _check(m, "file:///etc/passwd")


def test_percent_encoded_dot_segments_do_not_escape_an_http_root():
    """An HTTP client (yarl, under fsspec's http) decodes ``%2e%2e`` and folds it as ``..``."""
    m = "http://media.local/lists/m.jsonl"
    assert _check(m, "ok%20name.mp4") is None
    for entry in ("%2e%2e/admin", "%2E%2E/%2e%2e/etc/passwd", "..%2Fadmin",
                  "http://media.local/lists/%2e%2e/admin"):  # fmt: skip
        assert "outside the allowed roots" in _check(m, entry), entry


def test_a_chained_url_is_judged_by_its_outermost_target():
    c = Confinement.for_manifest("s3://bucket/shards/m.jsonl", [], [])
    assert c.check("tar://000.mp4::s3://bucket/shards/000.tar") is None
    assert "outside" in c.check("tar://000.mp4::s3://elsewhere/000.tar")


def test_resolve_joins_relative_entries_and_keeps_absolute_ones():
    assert resolve("/data/lists", "a/../../b.mp4", True) == "/data/b.mp4"
    assert resolve("/data/lists", "/abs/x.mp4", True) == "/abs/x.mp4"
    assert resolve("s3://bucket/lists", "sub/x.mp4", False) == "s3://bucket/lists/sub/x.mp4"
    assert resolve("s3://bucket/lists", "/top.mp4", False) == "s3://bucket/top.mp4"
    assert resolve("/d", "https://h/v.mp4?sig=1", True) == "https://h/v.mp4?sig=1"
    assert resolve("/d", "file:///x/./y.mp4", True) == "/x/y.mp4"
