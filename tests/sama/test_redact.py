"""Secrets never survive ``sama.redact``: storage options, secret-looking keys, URL credentials."""

from __future__ import annotations

from sama.redact import REDACTED, redact, redact_url


def test_storage_options_keep_their_keys_but_lose_every_value():
    cfg = {
        "input": {
            "uri": "s3://b/in",
            "storage_options": {"key": "AKIA", "client_kwargs": {"x": 1}},
        },
        "output": {"storage_options": {"anon": False}},
    }
    out = redact(cfg)
    assert out["input"]["storage_options"] == {"key": REDACTED, "client_kwargs": REDACTED}
    assert out["output"]["storage_options"] == {"anon": REDACTED}
    assert cfg["input"]["storage_options"]["key"] == "AKIA"  # a copy, not in place


def test_secret_looking_keys_anywhere_in_any_case():
    out = redact({"hub": {"HF_TOKEN": "hf_abc", "Password": "p"}, "a": [{"aws_secret": "s"}]})
    assert out == {
        "hub": {"HF_TOKEN": REDACTED, "Password": REDACTED},
        "a": [{"aws_secret": REDACTED}],
    }
    assert redact({"sort_keys": True, "token_limit": None}) == {
        "sort_keys": True,
        "token_limit": None,
    }


def test_url_credentials_and_signed_query_values():
    assert redact_url("s3://AKIA:xyz@bucket/p") == f"s3://{REDACTED}@bucket/p"
    signed = redact_url("https://h/v.mp4?X-Amz-Signature=abc&x=1")
    assert "abc" not in signed and "x=1" in signed
    assert redact_url("/plain/path") == "/plain/path"
    assert redact({"uri": "https://u:p@host/a"})["uri"] == f"https://{REDACTED}@host/a"
