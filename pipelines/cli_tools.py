"""Entry points of ``sama validate``, ``sama dedup``, ``sama report`` and ``sama publish``
(``sama/cli.py`` dispatches here). Each takes ``argv`` and returns the exit code."""

from __future__ import annotations

import argparse
import json
import sys


def _validate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sama validate",
        description="Check every shard of a built (or published) dataset against its spec "
        "version: readable, footer (schema, provenance, row-group sizes under the caps, read "
        "before any data), tensor shapes/dtypes/byte lengths, finite values, consistent "
        "provenance, unique ids, every input of the build accounted for. Row groups the Hub "
        "viewer would not show are warnings. Each problem is one line naming the shard and "
        "column. Exit code 0 if valid, 1 if not.",
    )
    p.add_argument(
        "root",
        metavar="DIR_OR_URI",
        help="dataset root (any fsspec URI) holding "
        "clips/, pairs/, errors/, summary.json, build_config.yaml",
    )
    p.add_argument("--json", action="store_true", help="print a JSON report instead of text")
    p.add_argument(
        "--skip-finite",
        action="store_true",
        help="do not decode float tensors to check for NaN/Inf (faster)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="read footers and the small columns only (shapes, dtypes, ids): tensor bytes are "
        "checked against the footer's sizes, not cell by cell, and not for NaN/Inf",
    )
    _limit_args(p)
    return p


def _limit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-row-group-mb",
        type=int,
        default=1024,
        metavar="MB",
        help="refuse a row group above MB uncompressed (from the footer, before reading it; "
        "default: 1024)",
    )


def _limits(args):
    from datasets_spec.checks import Limits

    return Limits(max_row_group_bytes=args.max_row_group_mb << 20)


def validate_main(argv: list[str] | None = None) -> int:
    from pipelines.dataset.validate import validate

    args = _validate_parser().parse_args(argv)
    if args.max_row_group_mb < 1:
        print("sama validate: --max-row-group-mb must be >= 1", file=sys.stderr)
        return 2
    report = validate(
        args.root, full=not args.quick, check_finite=not args.skip_finite, limits=_limits(args)
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
    return 0 if report.ok else 1


def _report_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sama report",
        description="Write one self-contained HTML page about a built dataset: counts, "
        "distributions (inline SVG), validation, the most frequent errors, and a grid of "
        "sample anchor frames and latent previews with their captions.",
    )
    p.add_argument("root", metavar="DIR_OR_URI", help="dataset root (any fsspec URI)")
    p.add_argument(
        "-o", "--output", default="report.html", help="HTML file to write (default: report.html)"
    )
    p.add_argument(
        "--samples",
        type=int,
        default=12,
        metavar="N",
        help="sample rows in the preview grid (default: 12)",
    )
    p.add_argument(
        "--vae",
        metavar="MODEL_DIR",
        help="decode latent previews to pixels with "
        "the Wan VAE in MODEL_DIR (needs sama[models]); default: a cheap preview of "
        "latent channels 0-2",
    )
    p.add_argument(
        "--device",
        default="auto",
        help="device for --vae: auto, cpu, cuda, cuda:N (default: auto = cuda when available)",
    )
    p.add_argument(
        "--no-validate",
        action="store_true",
        help="leave the validation section out (faster on large datasets)",
    )
    return p


def report_main(argv: list[str] | None = None) -> int:
    from pipelines.report.page import write_report
    from sama.errors import ConfigError

    args = _report_parser().parse_args(argv)
    if args.samples < 0:
        print("sama report: --samples must be >= 0", file=sys.stderr)
        return 2
    try:
        out = write_report(
            args.root,
            args.output,
            samples=args.samples,
            vae_dir=args.vae,
            device=args.device,
            run_validation=not args.no_validate,
        )
    except (ImportError, ConfigError) as e:  # --vae: no models extra, or no model there
        print(f"sama report: {e}", file=sys.stderr)
        return 1
    print(out)
    return 0


def _publish_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sama publish",
        description="Validate a built dataset (footers and small columns; --full-check reads "
        "every tensor), lay it out as a Hub dataset repo (data/<kind>/*.parquet, a generated "
        "README.md card with one config and its features per kind, the redacted build config) "
        "and upload it with huggingface_hub: resumable (a re-run sends only what is missing), "
        "retried on 429/5xx, with progress. The token comes from HF_TOKEN or `hf auth login` "
        "and is never printed. Refuses invalid data (exit code 1).",
    )
    p.add_argument("root", metavar="DIR", help="dataset root (any fsspec URI)")
    p.add_argument("repo_id", metavar="REPO_ID", help="dataset repo on the Hub, e.g. org/name")
    p.add_argument(
        "--dry-run",
        metavar="OUT",
        help="write the exact folder that would be "
        "pushed to OUT (must be empty or new), print the plan, upload nothing",
    )
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.add_argument("--revision", help="branch to push to (created if missing; default: main)")
    p.add_argument("--endpoint", help="Hub endpoint (default: HF_ENDPOINT or huggingface.co)")
    p.add_argument(
        "--license", help="licence id for the card (default: `license` from the build config)"
    )
    p.add_argument(
        "--full-check",
        action="store_true",
        help="before uploading, read every tensor (byte lengths cell by cell, NaN/Inf), not "
        "only the footers and small columns",
    )
    p.add_argument(
        "--files-per-commit",
        type=int,
        default=50,
        help="files per commit on the LFS path (no hf_xet, or HF_HUB_DISABLE_XET=1), at most "
        "99 (default: 50); with Xet huggingface_hub sizes its commits itself",
    )
    p.add_argument(
        "--staging-dir",
        metavar="DIR",
        help="local folder for shards staged from an object-store root (default: the system "
        "temporary folder)",
    )
    p.add_argument(
        "--stage-gb",
        type=float,
        default=20.0,
        metavar="GB",
        help="an object-store root is staged and uploaded at most GB at a time (default: 20)",
    )
    _limit_args(p)
    return p


def publish_main(argv: list[str] | None = None) -> int:
    from pipelines.publish.hub import (
        PublishRefused,
        plan_publish,
        upload,
        write_folder,
        xet_enabled,
    )

    args = _publish_parser().parse_args(argv)
    if not 1 <= args.files_per_commit <= 99:
        print("sama publish: --files-per-commit must be between 1 and 99", file=sys.stderr)
        return 2
    if args.stage_gb <= 0 or args.max_row_group_mb < 1:
        print("sama publish: --stage-gb must be > 0 and --max-row-group-mb >= 1", file=sys.stderr)
        return 2
    try:
        plan = plan_publish(
            args.root,
            args.repo_id,
            license=args.license,
            files_per_commit=args.files_per_commit,
            full_check=args.full_check,
            limits=_limits(args),
        )
        print(plan.format(xet=not args.dry_run and xet_enabled()), flush=True)
        if args.dry_run:
            print(f"dry run: wrote {write_folder(plan, args.dry_run)}; nothing uploaded")
            return 0
        return _upload(plan, args, upload)
    except PublishRefused as e:
        print(f"sama publish: {e}", file=sys.stderr)
        return 1


def _upload(plan, args, upload) -> int:
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError

    if constants.is_offline_mode():
        print(
            "sama publish: HF_HUB_OFFLINE is set; unset it to upload (or use --dry-run OUT)",
            file=sys.stderr,
        )
        return 1
    try:
        result = upload(
            plan,
            endpoint=args.endpoint,
            private=args.private,
            revision=args.revision,
            staging_dir=args.staging_dir,
            stage_bytes=int(args.stage_gb * (1 << 30)),
            log=lambda m: print(m, flush=True),
        )
    except HfHubHTTPError as e:  # the message names the URL and status, never the token
        print(f"sama publish: the Hub refused a request: {e}", file=sys.stderr)
        return 1
    print(
        f"published {args.repo_id}: {len(result.on_hub)} file(s) on the Hub, "
        f"{len(result.commits)} upload call(s), {len(result.deleted)} stale deleted, "
        f"{result.retries} retried"
    )
    return 0


def _dedup_parser() -> argparse.ArgumentParser:
    from sama.dedup import DedupConfig

    d = DedupConfig()
    p = argparse.ArgumentParser(
        prog="sama dedup",
        description="Mark near-duplicate clips of a built dataset (re-encodes, re-uploads, the "
        "same shot at another bitrate or size) in a dedup/v1 table under ROOT/dedup/, without "
        "rewriting any shard: a Ray task per clip shard reads only the clip ids and SigLIP "
        "anchor tokens, faiss finds the clips whose global-token cosine is >= the threshold, "
        "and in each group the clip from the largest source, then the longest, then the "
        "smallest clip_id is kept. validate, report, publish and the trainer's loader honour "
        "the table (data.skip_duplicates=false keeps the marked clips). Holds the root's "
        "lease: refuses while a build runs into ROOT. Exit code 0 when written, 1 if not.",
    )
    p.add_argument("root", metavar="DIR_OR_URI", help="dataset root holding clips/*.parquet")
    p.add_argument(
        "--threshold",
        type=float,
        default=d.threshold,
        help=f"cosine similarity at or above which two clips are near-duplicates "
        f"(default: {d.threshold})",
    )
    p.add_argument(
        "--method",
        choices=("auto", "flat", "ivf"),
        default=d.index,
        help="faiss index: flat = exact, ivf = approximate (large sets), auto = flat "
        "up to 200,000 clips (default: auto)",
    )
    p.add_argument(
        "--neighbours",
        type=int,
        default=d.neighbours,
        help=f"nearest clips searched per clip (default: {d.neighbours})",
    )
    p.add_argument(
        "--nprobe",
        type=int,
        default=d.nprobe,
        help=f"ivf: inverted lists searched per query (default: {d.nprobe})",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing dedup table")
    p.add_argument(
        "--executor",
        choices=("ray", "local"),
        default="ray",
        help="ray (default): one task per shard; local: in this process",
    )
    p.add_argument(
        "--ray-address",
        default="",
        help="join this Ray cluster (or 'auto'); default: start a local Ray",
    )
    p.add_argument("--num-cpus", type=int, default=0, help="local Ray: CPUs (default: all)")
    p.add_argument(
        "--take-over-lease",
        action="store_true",
        help="replace a stale lease (its heartbeat older than 120 s); a live one is never taken",
    )
    return p


def dedup_main(argv: list[str] | None = None) -> int:
    from pipelines.dataset.dedup import DedupError, DedupRun, run_dedup
    from pipelines.engine.config import EngineConfig
    from pipelines.engine.lease import LeaseHeld
    from sama.dedup import DedupConfig

    args = _dedup_parser().parse_args(argv)
    run = DedupRun(
        dedup=DedupConfig(
            threshold=args.threshold,
            neighbours=args.neighbours,
            index=args.method,
            nprobe=args.nprobe,
        ),
        engine=EngineConfig(
            executor=args.executor,
            ray_address=args.ray_address,
            num_cpus=args.num_cpus,
            take_over_lease=args.take_over_lease,
        ),
        overwrite=args.overwrite,
    )
    try:
        result = run_dedup(args.root, run)
    except (DedupError, LeaseHeld) as e:
        print(f"sama dedup: {e}", file=sys.stderr)
        return 1
    print(result.format())
    return 0
