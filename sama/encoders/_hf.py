"""Shared loading plumbing for the encoders: where a model comes from, quiet loading, clear errors.

``from_pretrained`` treats any string that is not an existing directory as a hub repo id, so a
typo in a local path surfaces as an offline/hub error about a "repo id". We check local-looking
paths first and raise a ``ConfigError`` that names the path instead.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from sama.errors import ConfigError, FatalError

T = TypeVar("T")


def _looks_local(model_id: str) -> bool:
    """Hub ids are ``name`` or ``owner/name``; anything else is meant as a filesystem path."""
    if model_id.startswith(("/", ".", "~")) or model_id.count("/") > 1:
        return True
    return os.sep != "/" and os.sep in model_id


def check_source(model_id: str, subfolder: str | None, what: str) -> None:
    """Raise ``ConfigError`` if ``model_id`` is meant as a local directory that is not there."""
    path = Path(model_id).expanduser()
    if path.is_dir():
        if subfolder and not (path / subfolder).is_dir():
            raise ConfigError(
                f"{what}: local model directory {str(path)!r} has no subfolder {subfolder!r}; "
                f"found {sorted(p.name for p in path.iterdir() if p.is_dir())}"
            )
        return
    if _looks_local(model_id):
        raise ConfigError(
            f"{what}: model path {model_id!r} does not exist (a local directory was expected; "
            "build tiny test models with `sama models make-tiny DIR`)"
        )


def hub_kwargs(revision: str | None, subfolder: str | None) -> dict[str, Any]:
    """``from_pretrained`` location keywords: ``revision`` always, ``subfolder`` only when set
    (transformers' default is ``""``, not ``None``)."""
    kw: dict[str, Any] = {"revision": revision}
    if subfolder:
        kw["subfolder"] = subfolder
    return kw


def load_weights(
    model_cls: Any,
    cfg: Any,
    what: str,
    *,
    dtype_arg: str = "dtype",
    allowed_unexpected: tuple[str, ...] = (),
) -> Any:
    """``model_cls.from_pretrained`` for an encoder config (``model_id``, ``subfolder``,
    ``revision``, ``dtype``): safetensors only, errors that say where (``load_or_explain``),
    and refused unless every weight was in the checkpoint (``check_loading_info``).

    ``dtype_arg`` names the dtype keyword: ``dtype`` for transformers, ``torch_dtype`` for
    diffusers. The model stays where ``from_pretrained`` put it (CPU, train mode).
    """
    from sama.encoders.config import resolve_dtype

    kw = hub_kwargs(cfg.revision, cfg.subfolder)
    kw[dtype_arg] = resolve_dtype(cfg.dtype)
    model, info = load_or_explain(
        lambda: model_cls.from_pretrained(
            cfg.model_id, use_safetensors=True, output_loading_info=True, **kw
        ),
        what,
        cfg.model_id,
        cfg.subfolder,
        cfg.revision,
    )
    check_loading_info(info, what, allowed_unexpected)
    return model


def source_info(cfg: Any, config_hash: str) -> dict[str, Any]:
    """Where an encoder's weights came from, for provenance: id, subfolder, revision, the hash
    of the model config (not of the path) and the dtype it ran in."""
    return {
        "id": cfg.model_id,
        "subfolder": cfg.subfolder,
        "revision": cfg.revision,
        "config_hash": config_hash,
        "dtype": cfg.dtype,
    }


def load_or_explain(
    load: Callable[[], T], what: str, model_id: str, subfolder: str | None, revision: str | None
) -> T:
    """Run ``load()``; turn a missing/unreachable model into a ``FatalError`` that says where."""
    check_source(model_id, subfolder, what)
    try:
        with quiet_hf():
            return load()
    except OSError as e:
        where = f"{model_id!r}" + (f" subfolder {subfolder!r}" if subfolder else "")
        where += f" revision {revision!r}" if revision else ""
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        hint = (
            " HF_HUB_OFFLINE is set: download it first (`hf download ...`) or point model_id "
            "at a local copy."
            if offline
            else " Check the id/revision, your network and your hub token."
        )
        msg = str(e).strip().rstrip(".")
        raise FatalError(f"{what}: could not load {where}: {msg}.{hint}") from e


@contextlib.contextmanager
def quiet_hf() -> Iterator[None]:
    """Silence transformers/diffusers info logs and progress bars for the duration; restore after.

    Genuine problems are not hidden: callers check missing keys themselves and raise.
    """
    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog

    t_level, d_level = tlog.get_verbosity(), dlog.get_verbosity()
    t_bars, d_bars = tlog.is_progress_bar_enabled(), dlog.is_progress_bar_enabled()
    tlog.set_verbosity_error()
    dlog.set_verbosity_error()
    tlog.disable_progress_bar()
    dlog.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            # diffusers 0.42 passes an argument huggingface_hub 2.x deprecated; pure noise.
            warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")
            yield
    finally:
        tlog.set_verbosity(t_level)
        dlog.set_verbosity(d_level)
        if t_bars:
            tlog.enable_progress_bar()
        if d_bars:
            dlog.enable_progress_bar()


def check_loading_info(info: dict, what: str, allowed_unexpected: tuple[str, ...] = ()) -> None:
    """Refuse a checkpoint that leaves weights of the model uninitialised (random)."""
    missing = list(info.get("missing_keys") or [])
    mismatched = list(info.get("mismatched_keys") or [])
    unexpected = [
        k for k in info.get("unexpected_keys") or [] if not k.startswith(allowed_unexpected)
    ]
    if missing or mismatched or unexpected:
        raise FatalError(
            f"{what}: checkpoint does not match the model: missing={missing[:8]} "
            f"mismatched={mismatched[:8]} unexpected={unexpected[:8]}"
        )
