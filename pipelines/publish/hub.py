"""``sama publish``: lay a validated dataset out as a Hub dataset repo and upload it resumably.

Repo layout: ``data/{clips,pairs,errors}/*.parquet`` (shards copied byte for byte), the card
``README.md`` at the root (its ``configs`` point at the data files), ``build_config.yaml``.
Invalid data is refused before anything is written or sent. ``--dry-run OUT`` writes exactly
the folder that would be pushed and prints the plan.

Hub limits respected (https://huggingface.co/docs/hub/storage-limits): fewer than 100 files per
commit (``FILES_PER_COMMIT``), about 128 commits per hour (``CommitRateLimiter``), fewer than
10k files per folder (a kind with more shards is split into numbered sub-folders). Resumable:
files already on the Hub with the same content are skipped, so a re-run after an interruption
uploads only what is missing; the card goes last, so a half-pushed repo never advertises
configs whose files are not there. The token comes from ``HF_TOKEN`` or ``hf auth login`` and
is never printed.
"""

from __future__ import annotations

import hashlib
import posixpath
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.dataset.layout import BUILD_CONFIG_FILE, KINDS, license_of, open_dataset_dir
from pipelines.dataset.validate import ValidationReport, validate
from pipelines.publish.card import render_card
from sama.shards import url_to_fs

FILES_PER_COMMIT = 50  # Hub: < 100 operations per commit
FILES_PER_FOLDER = 9_000  # Hub: < 10k files per folder
COMMITS_PER_HOUR = 120  # Hub: about 128 commits per hour per repo


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

    def batches(self) -> list[list[PlannedFile]]:
        return batch_files(self.files, self.files_per_commit)

    def format(self) -> str:
        total = sum(f.size for f in self.files)
        lines = [
            f"publish {self.root} -> {self.repo_id or '<dry run>'} (dataset repo)",
            f"  {len(self.files)} files, {total / 1e6:.1f} MB, "
            f"{len(self.batches())} commit(s) of <= {self.files_per_commit} files",
        ]
        for k, glob in self.data_files.items():
            n = sum(1 for f in self.files if f.repo_path.startswith(f"data/{k}/"))
            lines.append(
                f"  config {k!r}: {n} file(s) {glob} ({self.validation.rows.get(k, 0)} rows)"
            )
        for i, b in enumerate(self.batches(), 1):
            lines.append(
                f"  commit {i}: {len(b)} file(s): {b[0].repo_path}"
                + (f" .. {b[-1].repo_path}" if len(b) > 1 else "")
            )
        return "\n".join(lines)


def batch_files(files: list[PlannedFile], per_commit: int) -> list[list[PlannedFile]]:
    per_commit = max(1, min(per_commit, 99))
    return [files[i : i + per_commit] for i in range(0, len(files), per_commit)]


def repo_paths(shards: list[str], kind: str, per_folder: int) -> tuple[list[str], str]:
    """Repo paths of one kind's shards and the glob that matches them."""
    names = [posixpath.basename(s) for s in shards]
    if len(names) <= per_folder:
        return [f"data/{kind}/{n}" for n in names], f"data/{kind}/*.parquet"
    return (
        [f"data/{kind}/{i // per_folder:04d}/{n}" for i, n in enumerate(names)],
        f"data/{kind}/*/*.parquet",
    )


def plan_publish(
    root: str,
    repo_id: str | None = None,
    *,
    fs=None,
    license: str | None = None,
    files_per_folder: int = FILES_PER_FOLDER,
    files_per_commit: int = FILES_PER_COMMIT,
) -> PublishPlan:
    """Validate ``root`` (refusing invalid data) and plan the repo's files, card last."""
    report = validate(root, fs)
    if not report.ok:
        raise PublishRefused("refusing to publish invalid data:\n" + report.format())
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
    if ds.build_config is not None:  # copied as written by the build
        src = posixpath.join(root, BUILD_CONFIG_FILE)
        sfs, p = url_to_fs(src, ds.fs)
        files.append(PlannedFile(BUILD_CONFIG_FILE, int(sfs.size(p)), source=src))
    card = render_card(
        report,
        data_files,
        summary=ds.summary,
        build_config=ds.build_config,
        license=license or license_of(ds.build_config),
        repo_id=repo_id,
    ).encode()
    files.append(PlannedFile("README.md", len(card), content=card))
    return PublishPlan(root, repo_id, files, data_files, report, ds.fs, files_per_commit)


def write_folder(plan: PublishPlan, out: str | Path) -> Path:
    """Write exactly the files that would be pushed under ``out`` (which must be empty)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise PublishRefused(f"{out} is not empty; choose a new folder for the dry run")
    for f in plan.files:
        dst = out / f.repo_path
        dst.parent.mkdir(parents=True, exist_ok=True)
        if f.content is not None:
            dst.write_bytes(f.content)
        else:
            sfs, p = url_to_fs(f.source, plan.fs)
            with sfs.open(p, "rb") as src, open(dst, "wb") as d:
                shutil.copyfileobj(src, d, 1 << 22)
    return out


class CommitRateLimiter:
    """Blocks before a commit that would exceed ``per_hour`` commits in the last hour."""

    def __init__(
        self,
        per_hour: int = COMMITS_PER_HOUR,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.per_hour, self.clock, self.sleep = per_hour, clock, sleep
        self.times: deque[float] = deque()

    def wait(self) -> float:
        """Sleep if needed, then record a commit; returns the seconds slept."""
        now = self.clock()
        while self.times and now - self.times[0] >= 3600:
            self.times.popleft()
        slept = 0.0
        if len(self.times) >= self.per_hour:
            slept = 3600 - (now - self.times[0])
            self.sleep(slept)
            self.times.popleft()
        self.times.append(self.clock())
        return slept


@dataclass
class UploadResult:
    commits: list[str] = field(default_factory=list)  # commit oids
    uploaded: list[str] = field(default_factory=list)  # repo paths sent
    skipped: list[str] = field(default_factory=list)  # already on the Hub, same content
    deleted: list[str] = field(default_factory=list)  # stale data files removed


def _hashes(plan: PublishPlan, f: PlannedFile) -> tuple[str, str]:
    """(sha256, git blob sha1) of a planned file, streamed."""
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1()
    sha1.update(f"blob {f.size}\0".encode())
    if f.content is not None:
        sha256.update(f.content)
        sha1.update(f.content)
    else:
        sfs, p = url_to_fs(f.source, plan.fs)
        with sfs.open(p, "rb") as src:
            while chunk := src.read(1 << 22):
                sha256.update(chunk)
                sha1.update(chunk)
    return sha256.hexdigest(), sha1.hexdigest()


def _remote_files(api, repo_id: str, revision: str | None) -> dict:
    from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError

    try:
        tree = api.list_repo_tree(repo_id, repo_type="dataset", revision=revision, recursive=True)
        return {e.path: e for e in tree if hasattr(e, "blob_id")}
    except (RevisionNotFoundError, EntryNotFoundError):
        return {}


def _unchanged(plan: PublishPlan, f: PlannedFile, remote) -> bool:
    if remote is None or remote.size != f.size:
        return False
    sha256, sha1 = _hashes(plan, f)
    return remote.lfs.sha256 == sha256 if remote.lfs is not None else remote.blob_id == sha1


def upload(
    plan: PublishPlan,
    *,
    api=None,
    endpoint: str | None = None,
    private: bool = False,
    revision: str | None = None,
    limiter: CommitRateLimiter | None = None,
    log: Callable[[str], None] = print,
) -> UploadResult:
    """Create the repo if needed and push the plan in batched commits; safe to re-run."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, get_token

    if plan.repo_id is None:
        raise ValueError("the plan has no repo id")
    if api is None:
        if get_token() is None:
            raise PublishRefused("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
        api = HfApi(endpoint=endpoint)
    limiter = limiter or CommitRateLimiter()
    api.create_repo(plan.repo_id, repo_type="dataset", private=private, exist_ok=True)
    if revision and revision != "main":
        api.create_branch(plan.repo_id, repo_type="dataset", branch=revision, exist_ok=True)
    remote = _remote_files(api, plan.repo_id, revision)
    result = UploadResult()
    todo = []
    for f in plan.files:
        (result.skipped if _unchanged(plan, f, remote.get(f.repo_path)) else todo).append(f)
    planned = {f.repo_path for f in plan.files}
    stale = sorted(p for p in remote if p.startswith("data/") and p not in planned)
    result.deleted = stale
    log(
        f"{len(result.skipped)} file(s) already on the Hub, {len(todo)} to upload, "
        f"{len(stale)} stale to delete"
    )
    items: list[PlannedFile | str] = [*stale, *todo]  # str = a path to delete
    n = plan.files_per_commit
    batches = [items[i : i + n] for i in range(0, len(items), n)]
    for i, batch in enumerate(batches, 1):
        with tempfile.TemporaryDirectory(prefix="sama-publish-") as tmp:  # remote shards land here
            ops = [
                CommitOperationDelete(x)
                if isinstance(x, str)
                else CommitOperationAdd(x.repo_path, _local_source(plan, x, tmp))
                for x in batch
            ]
            limiter.wait()
            info = api.create_commit(
                plan.repo_id,
                operations=ops,
                repo_type="dataset",
                revision=revision,
                commit_message=f"sama publish: part {i}/{len(batches)} ({len(ops)} files)",
            )
        result.commits.append(info.oid)
        result.uploaded += [x.repo_path for x in batch if isinstance(x, PlannedFile)]
        log(f"commit {i}/{len(batches)}: {len(ops)} file(s) -> {info.oid}")
    return result


def _local_source(plan: PublishPlan, f: PlannedFile, tmp: str) -> str | bytes:
    """What ``CommitOperationAdd`` gets: bytes, a local path, or a local copy of a remote shard."""
    if f.content is not None:
        return f.content
    sfs, p = url_to_fs(f.source, plan.fs)
    protocols = sfs.protocol if isinstance(sfs.protocol, tuple) else (sfs.protocol,)
    if "file" in protocols or "local" in protocols:
        return p
    local = Path(tmp) / f.repo_path
    local.parent.mkdir(parents=True, exist_ok=True)
    sfs.get(p, str(local))
    return str(local)
