"""The s1 engine: normalise audio files to one rate, channel layout and loudness.

``normalize_file`` does one file (decode, mix, resample, optionally segment, gain, write);
``normalize_items`` runs it over a list through the shared runner (resume, workers, report).
The ``wf-audio-normalize`` CLI (``s1_audio_normalize``) and ``training.audiocraft`` call it.
"""

from __future__ import annotations

import contextlib
import functools
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from workflow import audio
from workflow.errors import AudioReadError, UsageError
from workflow.files import commit_group, discover, mirror_path, relative_key, temp_sibling
from workflow.runner import Runner, RunOptions, RunReport, WorkItem

STAGE = "s1_audio_normalize"


@dataclass(frozen=True)
class NormalizeConfig:
    """Everything that decides what one output file contains (recorded in the run report)."""

    sample_rate: int = 24000
    channels: str = "mono"
    method: str = "rms"
    target_rms: float = 0.1
    window_ms: float = 250.0
    target_lufs: float = -23.0
    peak_limit: float = 0.999
    silence_floor_rms: float = 1e-5
    segment_seconds: float | None = None
    min_segment_seconds: float = 0.0
    gain_scope: str = "segment"
    subtype: str = "PCM_16"

    def channel_policy(self) -> str | int:
        return int(self.channels) if self.channels.isdigit() else self.channels


def segment_path(dst: Path, index: int) -> Path:
    """Where segment ``index`` of the output ``dst`` goes: ``stem_0000.wav``, ``stem_0001.wav``, …"""
    return dst.with_name(f"{dst.stem}_{index:04d}{dst.suffix}")


def output_paths(dst: Path, n_segments: int | None) -> list[Path]:
    """``stem.wav``, or ``stem_0000.wav``, ``stem_0001.wav``, … when segmenting."""
    if n_segments is None:
        return [dst]
    return [segment_path(dst, i) for i in range(n_segments)]


def first_output(dst: Path, cfg: NormalizeConfig) -> Path:
    """The file whose existence means the item is finished (segments commit it last)."""
    return output_paths(dst, 1 if cfg.segment_seconds else None)[0]


_EXACT_LENGTH_FORMATS = ("WAV", "WAVEX", "AIFF", "FLAC")  # headers that give the exact frame count


def _expected_frames(src: Path, cfg: NormalizeConfig) -> tuple[int, int | None] | None:
    """(channels, frames) the first output of ``src`` gets, from the input's header alone;
    frames is None for formats whose header gives only an estimate (mp3, ogg)."""
    try:
        info = audio.audio_info(src)
    except AudioReadError:
        return None
    policy = cfg.channel_policy()
    channels = info.channels if policy == "keep" else 1 if policy == "mono" else int(policy)
    if info.format not in _EXACT_LENGTH_FORMATS:
        return channels, None
    frames = (2 * info.frames * cfg.sample_rate + info.sample_rate) // (2 * info.sample_rate)
    if cfg.segment_seconds:
        frames = min(frames, max(1, int(round(cfg.segment_seconds * cfg.sample_rate))))
    return channels, frames


def output_problem(item: WorkItem, cfg: NormalizeConfig) -> str | None:
    """Why ``item`` is not finished (``None`` when it is): its first output is missing,
    unreadable, truncated, or not the rate, channels or length the input gives (±1 frame)."""
    out = first_output(item.dst, cfg)
    if not out.exists():
        return "missing"
    try:
        info = audio.audio_info(out)
        cut = audio.promised_frames(out)
    except (AudioReadError, OSError) as exc:
        return f"unreadable ({exc})"
    if cut or info.frames == 0:
        return f"truncated ({info.frames} frames)"
    if info.sample_rate != cfg.sample_rate:
        return f"{info.sample_rate} Hz, not {cfg.sample_rate}"
    expected = _expected_frames(item.src, cfg)
    if expected is not None:
        channels, frames = expected
        if info.channels != channels:
            return f"{info.channels} channels, not {channels}"
        if frames is not None and abs(info.frames - frames) > 1:
            return f"{info.frames} frames, not {frames}"
    return None


def normalize_file(src: Path, dst: Path, cfg: NormalizeConfig) -> dict:
    """Normalise one file into ``dst`` (or its segments); returns what the report records."""
    data, sr_in = audio.read_audio(src)
    info: dict = {"in_sample_rate": sr_in, "in_channels": int(data.shape[0]),
                  "in_seconds": round(data.shape[1] / sr_in, 4)}
    data = audio.resample(audio.to_channels(data, cfg.channel_policy()), sr_in, cfg.sample_rate)
    sr = cfg.sample_rate
    if cfg.segment_seconds:
        pieces = audio.split_segments(data, sr, cfg.segment_seconds, cfg.min_segment_seconds)
        if not pieces:
            info["flags"] = ["too_short"]
            info["outputs"] = 0
            return info
    else:
        pieces = [data]

    gain_kw = dict(method=cfg.method, target_rms=cfg.target_rms, window_ms=cfg.window_ms,
                   target_lufs=cfg.target_lufs, peak_limit=cfg.peak_limit,
                   silence_floor_rms=cfg.silence_floor_rms)
    if cfg.gain_scope == "file":
        # One gain for all pieces; it was peak-guarded on the whole file, so no piece clips.
        decisions = [audio.compute_gain(data, sr, **gain_kw)] * len(pieces)
    else:
        decisions = [audio.compute_gain(p, sr, **gain_kw) for p in pieces]

    outs = output_paths(dst, len(pieces) if cfg.segment_seconds else None)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if len(outs) == 1:
        audio.write_audio(outs[0], audio.apply_gain(pieces[0], decisions[0]), sr, subtype=cfg.subtype)
    else:
        tmps: list[Path] = []
        try:
            for out, piece, dec in zip(outs, pieces, decisions):
                tmps.append(temp_sibling(out))
                audio.write_audio(tmps[-1], audio.apply_gain(piece, dec), sr, subtype=cfg.subtype)
            commit_group(list(zip(tmps, outs)))
        except BaseException:
            for t in tmps:
                with contextlib.suppress(FileNotFoundError):
                    t.unlink()
            raise
    flags = sorted({f for d in decisions for f in d.flags})
    info.update(
        outputs=len(outs), seconds_out=round(sum(p.shape[1] for p in pieces) / sr, 4),
        gain_db=[round(d.gain_db, 3) for d in decisions] if len(decisions) > 1 else round(decisions[0].gain_db, 3),
        measured=round(decisions[0].measured, 6), flags=flags,
    )
    return info


def _process(item: WorkItem, cfg: NormalizeConfig) -> dict:
    return normalize_file(item.src, item.dst, cfg)


def build_items(in_root: Path, out_root: Path, extensions, recursive: bool) -> list[WorkItem]:
    """One item per input file; refuses two inputs that would write the same output."""
    items = [WorkItem(relative_key(p, in_root), p, mirror_path(p, in_root, out_root, ".wav"))
             for p in discover(in_root, extensions, recursive=recursive, exclude=[out_root])]
    clashes = [dst for dst, n in Counter(it.dst for it in items).items() if n > 1]
    if clashes:
        names = ", ".join(it.key for it in items if it.dst in clashes[:3])
        raise UsageError(f"inputs would overwrite each other's output ({names}); "
                         "rename them so their stems differ")
    return items


def normalize_items(items: list[WorkItem], cfg: NormalizeConfig, options: RunOptions,
                    params: dict | None = None) -> RunReport:
    """Run s1 over ``items`` through the shared runner (resume, workers, report).

    Other tools that need normalised segments (e.g. ``training.audiocraft prepare``) call this
    rather than re-implementing the loop.
    """
    runner = Runner(STAGE, options, {**(params or {}), **asdict(cfg)})
    return runner.map(items, functools.partial(_process, cfg=cfg),
                      is_done=lambda it: output_problem(it, cfg) is None)
