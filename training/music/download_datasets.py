"""Download, verify, safely extract and organise the music datasets the training loaders use.

DEAM, Lakh MIDI, MAESTRO and Groove, from their official archives; every step is idempotent and
checksums are enforced where the publisher gives one. Downloading and extraction are
:mod:`training.fetch`, the catalogue :mod:`training.music.sources`, the organisers
:mod:`training.music.organize`; this module runs them per dataset, holds the CLI and re-exports
the names it always offered. Layout and checksum policy: README.md, "The music-model suite".
"""


from __future__ import annotations

if __package__ in (None, ""):  # run as a file: make the repository importable
    import sys
    from pathlib import Path as _P

    sys.path[0] = str(_P(__file__).resolve().parents[2])

import argparse
import logging
import os
import shutil
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The public fetch names are re-exported: they lived here before training/fetch.py.
from training.fetch import (  # noqa: F401
    CHUNK_BYTES,
    DISK_MARGIN_BYTES,
    FOUND_IN_PLACE,
    MARKER_SCHEMA,
    USER_AGENT,
    ChecksumMismatchError,
    DownloadError,
    DownloadResult,
    ExtractionError,
    FetchError,
    RemoteFile,
    UnsafeArchiveError,
    _marker_path,
    _now,
    _part_paths,
    _read_json,
    _unlink,
    _valid_marker,
    _write_json,
    download_file,
    format_bytes,
    parse_content_range,
    safe_extract,
    sha256_file,
)
from training.music.organize import (  # noqa: F401 - re-exported: they lived here
    GROOVE_LABEL_FIELDS,
    ORGANIZERS,
    OrganizeError,
    OrganizeResult,
    organize_deam,
    organize_groove,
    organize_lakh,
    organize_maestro,
)
from training.music.sources import (  # noqa: F401
    DEFAULT_DATASETS,
    SOURCES,
    DatasetSource,
    DatasetsLayout,
    manual_hint,
)
from workflow.errors import UsageError
from workflow.runner import run_cli, setup_logging

log = logging.getLogger(__name__)

#: The base of every error this tool raises (download, verification, extraction, organising).
DatasetDownloadError = FetchError


@dataclass
class DatasetResult:
    """What :func:`download_dataset` did for one dataset."""

    name: str
    raw_dir: Path
    downloads: list[DownloadResult] = field(default_factory=list)
    extracted: bool = False
    members: int = 0
    archives_removed: list[str] = field(default_factory=list)
    organize: OrganizeResult | None = None
    notes: list[str] = field(default_factory=list)


def _extract_marker_ok(source: DatasetSource, marker: dict[str, Any] | None, *, enforce: bool) -> bool:
    if marker is None or marker.get("dataset") != source.name:
        return False
    recorded = {a.get("file"): a.get("sha256") for a in marker.get("archives", []) if isinstance(a, dict)}
    if set(recorded) != {f.filename for f in source.files}:
        return False
    if enforce:
        for f in source.files:
            if f.sha256 and recorded.get(f.filename) != f.sha256.lower():
                return False
    return True


EXTRACT_MARKER = ".extracted.json"


def download_dataset(
    source: DatasetSource,
    datasets_dir: Path | str,
    *,
    organize: bool = False,
    keep_archives: bool = False,
    force: bool = False,
    use_existing_raw: bool = False,
    enforce_checksum: bool = True,
    link_files: bool = True,
    retries: int = 5,
    backoff_s: float = 2.0,
    timeout_s: float = 60.0,
    progress: bool = True,
) -> DatasetResult:
    """Download, verify and extract ``source`` under ``datasets_dir``; optionally organise it.

    Re-running is cheap: when ``raw/<name>/.extracted.json`` matches the source, nothing is
    downloaded (not even a request is made) and nothing is extracted again.
    """
    layout = DatasetsLayout(Path(datasets_dir))
    raw_dir = layout.raw / source.name
    result = DatasetResult(source.name, raw_dir)
    marker = _read_json(raw_dir / EXTRACT_MARKER)

    if use_existing_raw and raw_dir.is_dir() and marker is None:
        result.notes.append(f"using {raw_dir} as it is (--use-existing-raw); nothing downloaded")
        log.info("%s: using existing %s without a marker (--use-existing-raw)", source.name, raw_dir)
    elif not force and _extract_marker_ok(source, marker, enforce=enforce_checksum):
        result.notes.append(f"already extracted ({raw_dir / EXTRACT_MARKER})")
        log.info("%s: already extracted in %s; nothing to download", source.name, raw_dir)
    else:
        if raw_dir.exists() and marker is None:
            raise ExtractionError(
                f"{raw_dir} exists but has no {EXTRACT_MARKER} marker, so it was not finished by "
                "this tool. Delete it to extract again, or, if you put the dataset there yourself, "
                "re-run with --use-existing-raw"
            )
        for remote in source.files:
            result.downloads.append(download_file(
                remote, layout.downloads, retries=retries, backoff_s=backoff_s,
                timeout_s=timeout_s, progress=progress, enforce_checksum=enforce_checksum,
                force=force, hint=manual_hint(source, remote, layout),
            ))
        _extract_downloads(source, layout, result, progress=progress)
        if not keep_archives:
            _remove_archives(result)

    if organize:
        result.organize = _organize(source, layout, raw_dir, link_files=link_files, progress=progress)
    return result


def _extract_downloads(source: DatasetSource, layout: DatasetsLayout, result: DatasetResult, *,
                       progress: bool) -> None:
    """Extract every downloaded archive into a scratch folder, write its marker there and only
    then move it to ``result.raw_dir``; a failure leaves no scratch folder behind."""
    raw_dir = result.raw_dir
    scratch = layout.raw / f".{source.name}.extracting"
    if scratch.exists():
        shutil.rmtree(scratch)
    try:
        for dl in result.downloads:
            log.info("%s: extracting %s", source.name, dl.path.name)
            result.members += safe_extract(dl.path, scratch, progress=progress)
        _write_json(scratch / EXTRACT_MARKER, {
            "schema": MARKER_SCHEMA, "dataset": source.name, "members": result.members,
            "archives": [{"file": d.path.name, "url": d.url, "size_bytes": d.size_bytes,
                          "sha256": d.sha256, "checks": d.checks} for d in result.downloads],
            "extracted_at": _now(),
        })
        if raw_dir.exists():  # --force over a finished extraction of ours
            shutil.rmtree(raw_dir)
        os.replace(scratch, raw_dir)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    result.extracted = True


def _remove_archives(result: DatasetResult) -> None:
    """Delete the downloaded archives (and their markers); files the user placed are kept."""
    for dl in result.downloads:
        if dl.origin == FOUND_IN_PLACE:  # a file the user put there is theirs to delete
            result.notes.append(f"kept {dl.path} (you placed it there)")
            continue
        _unlink(dl.path, _marker_path(dl.path))
        result.archives_removed.append(dl.path.name)


def _organize(source: DatasetSource, layout: DatasetsLayout, raw_dir: Path, *, link_files: bool,
              progress: bool) -> OrganizeResult:
    """Run the source's organizer from ``raw_dir`` into the training layout and record what it did."""
    organizer = ORGANIZERS.get(source.organizer)
    if organizer is None:
        raise UsageError(f"{source.name}: unknown organizer {source.organizer!r}")
    org = organizer(raw_dir, layout.training, link=link_files, progress=progress)
    org.dataset = source.name
    _write_json(layout.training / ".organized" / f"{source.name}.json", {
        "schema": MARKER_SCHEMA, "dataset": source.name, "raw_dir": str(raw_dir),
        "outputs": org.outputs, "files_placed": org.placed, "files_already_there": org.already_there,
        "labels_file": str(org.labels_file) if org.labels_file else None,
        "labelled": org.labelled, "notes": org.notes, "organized_at": _now(),
    })
    return org


# ─── dry run and the source table ──────────────────────────────────────────────────────────────

ORGANIZE_TARGETS = {
    "deam": "training/audio/ + training/audio/labels.csv",
    "lakh": "training/midi/ (no labels: none exist for Lakh)",
    "maestro": "training/maestro/ + maestro-v*.csv (official split; the loaders also read the guide's "
               "training/dynamics_midi/)",
    "groove": "training/groove/ + info.csv (official split) + training/groove/groove_info.json (metadata, "
              "not targets; the loaders also read the guide's training/drums/)",
}


def plan_dataset(source: DatasetSource, datasets_dir: Path | str, *, organize: bool = False,
                 force: bool = False, enforce_checksum: bool = True,
                 use_existing_raw: bool = False) -> list[str]:
    """What :func:`download_dataset` would do, from local files only (no network, no writes)."""
    layout = DatasetsLayout(Path(datasets_dir))
    raw_dir = layout.raw / source.name
    lines: list[str] = []
    marker = _read_json(raw_dir / EXTRACT_MARKER)
    if use_existing_raw and raw_dir.is_dir() and marker is None:
        lines.append(f"would use {raw_dir} as it is (--use-existing-raw): nothing to download")
    elif not force and _extract_marker_ok(source, marker, enforce=enforce_checksum):
        lines.append(f"already extracted in {raw_dir}: nothing to download or extract")
    else:
        if raw_dir.exists() and marker is None:
            lines.append(f"WOULD STOP: {raw_dir} exists without a marker (delete it or use --use-existing-raw)")
        for remote in source.files:
            dest = layout.downloads / remote.filename
            part, _ = _part_paths(dest)
            if not force and _valid_marker(remote, dest, enforce=enforce_checksum):
                lines.append(f"{dest}: already downloaded and verified")
            elif not force and dest.is_file():
                lines.append(f"{dest}: present without a marker; would verify and use it")
            elif not force and part.is_file():
                lines.append(f"would resume {remote.url} from byte {part.stat().st_size} -> {dest}")
            else:
                lines.append(f"would download {remote.url} (size: {remote.approx_size}) -> {dest}")
        lines.append(f"would extract {len(source.files)} archive(s) -> {raw_dir}")
    if organize:
        lines.append(f"would organize into {layout.root}/: {ORGANIZE_TARGETS.get(source.organizer, 'training/')}")
    return lines


def format_source_table(sources: Mapping[str, DatasetSource]) -> str:
    """The ``--list`` text: every source with its files, sizes, checksums and licence."""
    out: list[str] = []
    wrap = textwrap.TextWrapper(width=100, initial_indent="    ", subsequent_indent="    ")
    for key, src in sources.items():
        default = " (default)" if key in DEFAULT_DATASETS else ""
        out.append(f"{key}{default}: {src.title}")
        out.append(f"  homepage: {src.homepage}")
        out.append(f"  licence:  {src.licence}")
        for f in src.files:
            out.append(f"  file:     {f.url}")
            out.append(f"            size {f.approx_size}")
            if f.sha256:
                out.append(f"            sha256 {f.sha256} (enforced; {f.checksum_source})")
            elif f.reference_sha256:
                out.append(f"            sha256 {f.reference_sha256} ({f.checksum_source})")
            else:
                out.append("            sha256: none published (measured value is recorded)")
        out.append(f"  organize: {ORGANIZE_TARGETS.get(src.organizer, '?')}")
        if src.notes:
            out.append("  notes:")
            out.extend(wrap.wrap(src.notes))
        out.append("")
    return "\n".join(out).rstrip() + "\n"


# ─── CLI ───────────────────────────────────────────────────────────────────────────────────────


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.music.download_datasets",
        description=(
            "Download the music datasets (DEAM, Lakh MIDI, MAESTRO, Groove) from their official "
            "URLs, resume broken transfers, verify published checksums, extract safely and, with "
            "--organize, lay them out under <datasets-dir>/training/ for the training loaders. "
            "Re-running is safe: finished, verified steps are skipped."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--datasets-dir", type=Path, default=Path("datasets"),
                        help="root folder for downloads/, raw/ and training/")
    parser.add_argument("--datasets", default=",".join(DEFAULT_DATASETS),
                        help=f"comma-separated names; available: {', '.join(SOURCES)}")
    parser.add_argument("--organize", action="store_true",
                        help="also lay the data out under <datasets-dir>/training/ (see --list)")
    parser.add_argument("--list", action="store_true",
                        help="print the sources (URLs, sizes, checksums, licences) and exit")
    parser.add_argument("--dry-run", action="store_true",
                        help="print what would be done from local state only; no network, no writes")
    parser.add_argument("--keep-archives", action="store_true",
                        help="keep the downloaded archives after a verified extraction")
    parser.add_argument("--force", action="store_true",
                        help="download and extract again even when markers say it is done")
    parser.add_argument("--use-existing-raw", action="store_true",
                        help="organize from a raw/<dataset>/ folder you filled yourself (no marker)")
    parser.add_argument("--no-checksum", action="store_true",
                        help="do not fail on a published size/SHA-256 mismatch (still recorded)")
    parser.add_argument("--copy", action="store_true",
                        help="copy files into training/ instead of hardlinking them to raw/")
    parser.add_argument("--retries", type=int, default=5, help="retries per file after a broken transfer")
    parser.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="-v info, -vv debug logging")
    return parser


def _select(names: str, sources: Mapping[str, DatasetSource]) -> list[DatasetSource]:
    wanted = [n.strip().lower() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in sources]
    if unknown:
        raise UsageError(f"unknown dataset(s) {', '.join(unknown)}; choose from {', '.join(sources)}")
    if not wanted:
        raise UsageError("--datasets is empty; choose from " + ", ".join(sources))
    return [sources[n] for n in dict.fromkeys(wanted)]


def main(argv: Sequence[str] | None = None, *, sources: Mapping[str, DatasetSource] | None = None) -> int:
    """CLI entry point; ``sources`` replaces the built-in table (tests point it at a local server)."""
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    table = dict(sources if sources is not None else SOURCES)
    if args.list:
        print(format_source_table(table), end="")
        return 0
    selected = _select(args.datasets, table)
    enforce = not args.no_checksum
    if args.dry_run:
        print(f"dry run: nothing is downloaded or written (datasets dir: {args.datasets_dir})")
        for src in selected:
            print(f"{src.name}:")
            for line in plan_dataset(src, args.datasets_dir, organize=args.organize,
                                     force=args.force, enforce_checksum=enforce,
                                     use_existing_raw=args.use_existing_raw):
                print(f"  {line}")
        return 0

    failed: list[str] = []
    for src in selected:
        try:
            res = download_dataset(
                src, args.datasets_dir, organize=args.organize, keep_archives=args.keep_archives,
                force=args.force, use_existing_raw=args.use_existing_raw, enforce_checksum=enforce,
                link_files=not args.copy, retries=args.retries, timeout_s=args.timeout,
                progress=not args.no_progress,
            )
        except DatasetDownloadError as exc:
            print(f"{src.name}: FAILED: {exc}", file=sys.stderr)
            failed.append(src.name)
            continue
        fetched = [d.path.name for d in res.downloads if d.fetched]
        print(f"{src.name}: ok ({res.raw_dir})")
        if fetched:
            print(f"  downloaded + verified: {', '.join(fetched)}")
        for d in res.downloads:
            print(f"  {d.path.name}: sha256 {d.sha256}; " + "; ".join(f"{k}: {v}" for k, v in d.checks.items()))
        if res.extracted:
            print(f"  extracted {res.members} members")
        if res.archives_removed:
            print(f"  archives removed after extraction (use --keep-archives to keep): {', '.join(res.archives_removed)}")
        for note in res.notes:
            print(f"  {note}")
        if res.organize is not None:
            org = res.organize
            print(f"  organized -> {', '.join(org.outputs)} ({org.placed} placed, {org.already_there} already there"
                  + (f", {org.labelled} labelled" if org.labels_file else "") + ")")
            for note in org.notes:
                print(f"    {note}")
    if failed:
        print(f"failed: {', '.join(failed)} (finished steps are kept; re-run the same command to resume)",
              file=sys.stderr)
        return 1
    return 0


def cli() -> None:
    sys.exit(run_cli(main))


if __name__ == "__main__":
    cli()
