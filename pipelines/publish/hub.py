"""``sama publish``: lay a validated dataset out as a Hub dataset repo and upload it resumably.

Repo layout: ``data/{clips,pairs,errors}/*.parquet`` and the dedup table, if ``sama dedup`` ran,
as ``data/dedup/*.parquet`` (its own config; files copied byte for byte; a kind with
more than ``FILES_PER_FOLDER`` shards goes to numbered sub-folders, the Hub's "< 10k entries per
folder"), the card ``README.md`` (its ``configs`` point at the data files) and
``build_config.yaml`` (redacted, ``sama.redact``). Invalid data is refused before anything is
written or sent; the pre-upload check reads footers and the small columns (``--full-check``
reads every tensor). Shards whose provenance holds secret-looking values are refused too: the
footers would carry them to the Hub byte for byte. ``--dry-run OUT`` writes the exact folder.

The upload is ``huggingface_hub``'s: ``HfApi.upload_folder``, which hashes the files, asks the
Hub which are unchanged (a re-run after an interruption skips what is already committed),
uploads the rest with retries on 429/5xx honouring ``Retry-After``, and shows progress. With
``hf_xet`` (installed with huggingface_hub 2.4 on the usual platforms) one call uploads a whole
group through the Xet pipeline, which sizes and retries its commits itself. Without it (or with
``HF_HUB_DISABLE_XET=1``) each call is one commit through the LFS protocol, so the data files go
in groups of ``--files-per-commit`` (the Hub asks for < 100 files per commit), and a commit
that still fails with 429/5xx (``create_commit`` does not retry its POST) is sent again.
A root on an object store is staged on local disk one group at a time (``--stage-gb``), never
held in memory; a local root is linked, not copied. Stale ``data/`` files of an older publish
are deleted first and the card goes last, so the repo never advertises files it lacks. The
token comes from ``HF_TOKEN`` or ``hf auth login`` and is never printed.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from datasets_spec.checks import Limits
from pipelines.dataset.dedup_table import DEDUP_DIR, dedup_paths
from pipelines.dataset.layout import BUILD_CONFIG_FILE, KINDS, license_of, open_dataset_dir
from pipelines.dataset.validate import ValidationReport, validate
from pipelines.publish.card import render_card
from sama.redact import redact
from sama.shards import is_local, url_to_fs

FILES_PER_COMMIT = 50  # LFS path: the Hub asks for < 100 files per commit
FILES_PER_FOLDER = 9_000  # Hub: < 10k entries per folder
STAGE_BYTES = 20 << 30  # object-store roots: bytes staged on local disk at once
RETRY_STATUS = (429, 500, 502, 503, 504)
RETRIES = 5
META_FILES = (BUILD_CONFIG_FILE, "README.md")  # the last group: the card goes last


class PublishRefused(ValueError):
    """The dataset is invalid (the message lists why) or the target folder is not empty."""


@dataclass(frozen=True)
class PlannedFile:
    repo_path: str
    size: int
    source: str | None = None  # shard path / URI, or None when ``content`` is given
    content: bytes | None = None


@dataclass
class PublishPlan:
    root: str
    repo_id: str | None
    files: list[PlannedFile]
    data_files: dict[str, str]  # config name -> glob in the repo
    validation: ValidationReport
    fs: object = None
    files_per_commit: int = FILES_PER_COMMIT
    local: bool = True  # the shards are on the local file system (linked, not staged)

    def groups(self, *, xet: bool, stage_bytes: int = STAGE_BYTES) -> list[list[PlannedFile]]:
        """One ``upload_folder`` call each: the data files (split by file count on the LFS
        path, by bytes when staged from an object store), then build config + card."""
        data = [f for f in self.files if f.repo_path not in META_FILES]
        meta = [f for f in self.files if f.repo_path in META_FILES]
        per_group = None if xet else self.files_per_commit
        groups: list[list[PlannedFile]] = []
        size = 0
        for f in data:
            full = groups and per_group is not None and len(groups[-1]) >= per_group
            over = groups and not self.local and size + f.size > stage_bytes
            if not groups or full or over:
                groups.append([])
                size = 0
            groups[-1].append(f)
            size += f.size
        return [*groups, meta] if meta else groups

    def format(self, *, xet: bool = False) -> str:
        total = sum(f.size for f in self.files)
        groups = self.groups(xet=xet)
        how = "Xet pipeline" if xet else f"LFS, <= {self.files_per_commit} files per commit"
        lines = [
            f"publish {self.root} -> {self.repo_id or '<dry run>'} (dataset repo)",
            f"  {len(self.files)} files, {total / 1e6:.1f} MB, {len(groups)} upload(s) ({how})",
        ]
        for k, glob in self.data_files.items():
            n = sum(1 for f in self.files if f.repo_path.startswith(f"data/{k}/"))
            rows = self.validation.rows.get(k, 0)
            if k == "dedup" and self.validation.dedup:
                rows = self.validation.dedup["duplicates"]
            lines.append(f"  config {k!r}: {n} file(s) {glob} ({rows} rows)")
        for i, g in enumerate(groups, 1):
            last = f" .. {g[-1].repo_path}" if len(g) > 1 else ""
            lines.append(f"  upload {i}: {len(g)} file(s): {g[0].repo_path}{last}")
        return "\n".join(lines)


def repo_paths(shards: list[str], kind: str, per_folder: int) -> tuple[list[str], str]:
    """Repo paths of one kind's shards and the glob that matches them."""
    names = [posixpath.basename(s) for s in shards]
    if len(names) <= per_folder:
        return [f"data/{kind}/{n}" for n in names], f"data/{kind}/*.parquet"
    return (
        [f"data/{kind}/{i // per_folder:04d}/{n}" for i, n in enumerate(names)],
        f"data/{kind}/*/*.parquet",
    )


def secret_paths(obj, path: str = "") -> list[str]:
    """Dotted paths of the string values ``sama.redact.redact`` would hide in ``obj``: storage
    options, secret-looking keys, URL credentials (numbers, and values already redacted by the
    build, aside)."""
    from sama.redact import REDACTED, is_secret_key, redact_url

    out: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            where = f"{path}.{k}" if path else str(k)
            if str(k) == "storage_options" and isinstance(v, dict):
                out += [f"{where}.{kk}" for kk, vv in v.items()
                        if vv not in (None, "", {}, [], REDACTED)]  # fmt: skip
            elif is_secret_key(k) and isinstance(v, str) and v not in ("", REDACTED):
                out.append(where)
            else:
                out += secret_paths(v, where)
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            out += secret_paths(v, f"{path}[{i}]")
    elif isinstance(obj, str) and redact_url(obj) != obj:
        out.append(path)
    return out


def _refuse_problems(report: ValidationReport) -> None:
    if not report.ok:
        raise PublishRefused("refusing to publish invalid data:\n" + report.format())
    mixed = [p for p in report.warnings if p.check == "versions"]
    if mixed:
        raise PublishRefused("refusing to publish: " + "; ".join(p.message for p in mixed))
    leaky = sorted({s.path for s in report.shards if s.provenance and secret_paths(s.provenance)})
    if leaky:
        raise PublishRefused(
            f"refusing to publish: the provenance of {len(leaky)} shard(s) (e.g. {leaky[0]}) "
            "holds secret-looking values (storage options, tokens, URL credentials), which "
            "the footers would carry to the Hub; rebuild with a build that redacts them"
        )


def plan_publish(
    root: str,
    repo_id: str | None = None,
    *,
    fs=None,
    license: str | None = None,
    files_per_folder: int = FILES_PER_FOLDER,
    files_per_commit: int = FILES_PER_COMMIT,
    full_check: bool = False,
    limits: Limits = Limits(),
) -> PublishPlan:
    """Validate ``root`` (refusing invalid data) and plan the repo's files, card last."""
    report = validate(root, fs, full=full_check, limits=limits)
    _refuse_problems(report)
    ds = open_dataset_dir(root, fs)
    files: list[PlannedFile] = []
    data_files: dict[str, str] = {}
    for kind in KINDS:
        shards = ds.shards.get(kind, [])
        if not shards:
            continue
        paths, data_files[kind] = repo_paths(shards, kind, files_per_folder)
        for src, dst in zip(shards, paths, strict=True):
            sfs, p = url_to_fs(src, ds.fs)
            files.append(PlannedFile(dst, int(sfs.size(p)), source=src))
    dedup = dedup_paths(root, fs) if report.dedup else []
    if dedup:  # validated above (an invalid table refuses the publish)
        data_files["dedup"] = f"data/{DEDUP_DIR}/*.parquet"
        for src in dedup:
            sfs, p = url_to_fs(src, ds.fs)
            dst = f"data/{DEDUP_DIR}/{posixpath.basename(src)}"
            files.append(PlannedFile(dst, int(sfs.size(p)), source=src))
    if ds.build_config is not None:  # redacted: it is shown to everyone
        text = yaml.safe_dump(redact(ds.build_config), sort_keys=False).encode()
        files.append(PlannedFile(BUILD_CONFIG_FILE, len(text), content=text))
    card = render_card(
        report,
        data_files,
        summary=ds.summary,
        build_config=ds.build_config,
        license=license or license_of(ds.build_config),
        license_link=license_of(ds.build_config, "license_link"),
        repo_id=repo_id,
    ).encode()
    files.append(PlannedFile("README.md", len(card), content=card))
    local = is_local(url_to_fs(root, fs)[0])
    return PublishPlan(root, repo_id, files, data_files, report, ds.fs, files_per_commit, local)


def _copy(plan: PublishPlan, f: PlannedFile, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if f.content is not None:
        dst.write_bytes(f.content)
        return
    sfs, p = url_to_fs(f.source, plan.fs)
    with sfs.open(p, "rb") as src, open(dst, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 22)  # streamed: never the whole shard in memory


def write_folder(plan: PublishPlan, out: str | Path) -> Path:
    """Write exactly the files that would be pushed under ``out`` (which must be empty)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise PublishRefused(f"{out} is not empty; choose a new folder for the dry run")
    for f in plan.files:
        _copy(plan, f, out / f.repo_path)
    return out


@contextlib.contextmanager
def staged(plan: PublishPlan, group: list[PlannedFile], parent: str | None) -> Iterator[Path]:
    """A folder holding ``group`` at its repo paths: local shards linked, the rest copied;
    removed afterwards (so at most one group of an object-store root is on disk)."""
    with tempfile.TemporaryDirectory(prefix="sama-publish-", dir=parent) as tmp:
        for f in group:
            dst = Path(tmp) / f.repo_path
            if f.source is not None and plan.local:
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(os.path.abspath(f.source), dst)
            else:
                _copy(plan, f, dst)
        yield Path(tmp)


@dataclass
class UploadResult:
    commits: list[str] = field(default_factory=list)  # commit oids after each upload call
    on_hub: list[str] = field(default_factory=list)  # planned repo paths found on the Hub after
    deleted: list[str] = field(default_factory=list)  # stale data files removed
    retries: int = 0  # upload calls sent again after a 429/5xx


def xet_enabled() -> bool:
    """Whether ``huggingface_hub`` will upload through Xet (``hf_xet`` installed, not disabled):
    the very test ``upload_folder`` makes (pinned huggingface_hub 2.4)."""
    from huggingface_hub.utils._runtime import is_xet_available

    return is_xet_available()


def with_retries(call: Callable[[], object], log: Callable[[str], None], result: UploadResult):
    """``call()``, sent again (at most ``RETRIES`` times) after a 429/5xx that
    ``huggingface_hub`` did not retry itself (the commit POST), waiting ``Retry-After``."""
    from huggingface_hub.errors import HfHubHTTPError

    for attempt in range(RETRIES + 1):
        try:
            return call()
        except HfHubHTTPError as e:
            status = getattr(e.response, "status_code", None)
            if status not in RETRY_STATUS or attempt == RETRIES:
                raise
            after = (e.response.headers.get("retry-after") or "").strip()
            wait = float(after) if after.isdigit() else float(2**attempt)
            log(f"the Hub answered {status}; sending again in {wait:.0f}s")
            result.retries += 1
            time.sleep(wait)
    raise AssertionError("unreachable")


def _api(endpoint: str | None):
    from huggingface_hub import HfApi, get_token

    if get_token() is None:
        raise PublishRefused("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    return HfApi(endpoint=endpoint)


def _remote_files(api, repo_id: str, revision: str | None) -> dict[str, int]:
    """repo path -> size of every file on the branch."""
    from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError

    try:
        tree = api.list_repo_tree(repo_id, repo_type="dataset", revision=revision, recursive=True)
        return {e.path: e.size for e in tree if hasattr(e, "size") and hasattr(e, "blob_id")}
    except (RevisionNotFoundError, EntryNotFoundError):
        return {}


def upload(
    plan: PublishPlan,
    *,
    api=None,
    endpoint: str | None = None,
    private: bool = False,
    revision: str | None = None,
    staging_dir: str | None = None,
    stage_bytes: int = STAGE_BYTES,
    log: Callable[[str], None] = print,
) -> UploadResult:
    """Create the repo if needed, delete stale data files, upload the groups, card last;
    safe to re-run after an interruption (what is already there is not sent again)."""
    from huggingface_hub import CommitOperationDelete

    if plan.repo_id is None:
        raise ValueError("the plan has no repo id")
    api = api or _api(endpoint)
    repo, kw = plan.repo_id, {"repo_type": "dataset", "revision": revision}
    result = UploadResult()
    api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
    if revision and revision != "main":
        api.create_branch(repo, repo_type="dataset", branch=revision, exist_ok=True)
    planned = {f.repo_path for f in plan.files}
    stale = sorted(
        p for p in _remote_files(api, repo, revision) if p.startswith("data/") and p not in planned
    )
    if stale:
        ops = [CommitOperationDelete(p) for p in stale]
        msg = f"sama publish: delete {len(stale)} stale data file(s)"
        with_retries(lambda: api.create_commit(repo, ops, commit_message=msg, **kw), log, result)
        result.deleted = stale
        log(f"deleted {len(stale)} stale data file(s) of an older publish")
    groups = plan.groups(xet=xet_enabled(), stage_bytes=stage_bytes)
    for i, group in enumerate(groups, 1):
        msg = f"sama publish: part {i}/{len(groups)} ({len(group)} files)"
        with staged(plan, group, staging_dir) as folder:
            info = with_retries(
                lambda folder=folder, msg=msg: api.upload_folder(
                    repo_id=repo, folder_path=folder, commit_message=msg, **kw
                ),
                log,
                result,
            )
        result.commits.append(info.oid)
        size = sum(f.size for f in group) / 1e6
        log(f"upload {i}/{len(groups)}: {len(group)} file(s), {size:.1f} MB -> {info.oid}")
    remote = _remote_files(api, repo, revision)
    wrong = [f.repo_path for f in plan.files if remote.get(f.repo_path) != f.size]
    if wrong:
        raise PublishRefused(
            f"after the upload, {len(wrong)} file(s) are missing or of another "
            f"size on the Hub, e.g. {wrong[0]}; re-run to resume"
        )
    result.on_hub = sorted(planned)
    return result
