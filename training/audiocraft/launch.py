"""``launch``: pre-flight checks, then ``python -m dora -P audiocraft run solver=… dset=…``.

AudioCraft's common first-run failures (``USER`` unset, a dset path instead of a name, missing
``datasource`` keys or manifests, no xformers / ffmpeg / srun, weights-only checkpoint loads)
surface deep inside Hydra or a data-loader worker, minutes in. Each is checked here first and
turned into one line saying what to do. The full table: README.md, "AudioCraft training through
Dora", **launch**.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from .dset import DsetError, load_datasource, missing_keys, parse_dset_name
from .egs import ManifestError, read_manifest

_PROBE = r"""
import importlib.util, json, sys, warnings, io, contextlib
out = {"python": sys.executable}
for mod in ("audiocraft", "dora"):
    spec = importlib.util.find_spec(mod)
    out[mod] = spec.origin if spec else None
if out["audiocraft"] and "xformers" in sys.argv:
    buf = io.StringIO()
    try:
        with warnings.catch_warnings(record=True) as w, contextlib.redirect_stderr(buf):
            warnings.simplefilter("always")
            from xformers import ops  # noqa: F401  (what audiocraft/modules/transformer.py does)
        out["xformers"] = "ok"
        out["xformers_warning"] = (buf.getvalue().strip().splitlines() or [str(x.message) for x in w] or [""])[0][:300]
    except Exception as exc:
        out["xformers"] = f"{type(exc).__name__}: {exc}"[:300]
print("PROBE" + json.dumps(out))
"""


@dataclass
class LaunchSpec:
    """Everything that decides the ``dora`` command and its environment."""

    dset: str
    solver: str = "compression/debug"
    overrides: list[str] = field(default_factory=list)
    dora_dir: Path = Path("/workspace/dora")
    team: str = "default"
    user: str | None = None
    python: str = sys.executable
    config_dir: Path | None = None
    cwd: Path | None = None
    grid: str | None = None
    clear: bool = False


@dataclass
class Preflight:
    """What the checks found: ``errors`` stop the launch, ``notes`` say what was set for you."""

    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    config_dir: Path | None = None
    probe: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def build_command(spec: LaunchSpec) -> list[str]:
    """The exact argv: ``python -m dora -P audiocraft run [--clear] solver=… dset=… overrides``."""
    head = [spec.python, "-m", "dora", "-P", "audiocraft"]
    if spec.grid:
        return head + ["grid", spec.grid]
    args = ["run"] + (["--clear"] if spec.clear else [])
    return head + args + [f"solver={spec.solver}", f"dset={parse_dset_name(spec.dset)}", *spec.overrides]


def format_command(cmd: list[str], env: dict[str, str]) -> str:
    """A copy-pasteable shell line: the variables we set, then the command."""
    keys = ("USER", "AUDIOCRAFT_TEAM", "AUDIOCRAFT_DORA_DIR", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    prefix = " ".join(f"{k}={shlex.quote(env[k])}" for k in keys if k in env)
    return (prefix + " " if prefix else "") + shlex.join(cmd)


def probe_python(python: str, *, xformers: bool = True, timeout: float = 120.0) -> dict:
    """Ask ``python`` where audiocraft/dora live and whether ``xformers.ops`` imports."""
    try:
        proc = subprocess.run([python, "-c", _PROBE] + (["xformers"] if xformers else []),
                              capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": f"cannot run {python}: {exc}"}
    for line in proc.stdout.splitlines():
        if line.startswith("PROBE"):
            return json.loads(line[len("PROBE"):])
    return {"error": f"{python} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}"}


def config_dir_from_probe(probe: dict) -> Path | None:
    """Dora/Hydra read ``../config`` relative to ``audiocraft/train.py``."""
    origin = probe.get("audiocraft")
    return Path(origin).parent.parent / "config" if origin else None


def _override_value(overrides: list[str], key: str) -> str | None:
    for o in overrides:
        k, sep, v = o.lstrip("+").partition("=")
        if sep and k == key:
            return v
    return None


def check_datasource(config_dir: Path, dset: str, overrides: list[str], cwd: Path) -> list[str]:
    """Errors in the dset YAML and the manifests it points to (command-line overrides win)."""
    try:
        path, ds = load_datasource(config_dir, dset)
    except DsetError as exc:
        return [str(exc)]
    for key in list(ds) + ["train", "valid", "evaluate", "generate"]:
        v = _override_value(overrides, f"datasource.{key}")
        if v is not None:
            ds[key] = v
    errors = [f"{path}: datasource.{k} is {'???' if ds.get(k) == '???' else 'missing'} — set it (re-run "
              "the dset command) or pass datasource.{k}=… on the command line" for k in missing_keys(ds)]
    seen: set[str] = set()
    for split in ("train", "valid", "evaluate", "generate"):
        folder = ds.get(split)
        if folder in (None, "", "???") or folder in seen:
            continue
        seen.add(folder)
        p = Path(str(folder))
        if not p.is_absolute():
            p = cwd / p
        try:
            read_manifest(p)
        except ManifestError as exc:
            errors.append(f"datasource.{split}: {exc}")
    return errors


def preflight(spec: LaunchSpec, base_env: dict[str, str] | None = None) -> Preflight:
    """Run every check; never starts anything."""
    env = dict(os.environ if base_env is None else base_env)
    pf = Preflight()
    try:
        parse_dset_name(spec.dset)
        dset_ok = True
    except DsetError as exc:
        pf.errors.append(str(exc))
        dset_ok = False
    if any(o.startswith(("dset=", "solver=")) for o in spec.overrides):
        pf.errors.append("pass dset and solver with --dset/--solver, not as overrides (they would be given twice)")

    if not env.get("USER") and not spec.user:
        user = _account_name()
        pf.notes.append(f"USER was unset (AudioCraft's config reads ${{oc.env:USER}}): using USER={user}")
        env["USER"] = user
    if spec.user:
        env["USER"] = spec.user
    env["AUDIOCRAFT_TEAM"] = spec.team
    env["AUDIOCRAFT_DORA_DIR"] = str(Path(spec.dora_dir).absolute())
    if "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in env:
        env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
        pf.notes.append("set TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1: torch >= 2.6 loads weights-only and "
                        "AudioCraft's checkpoint.th pickles its config, so resuming would fail with "
                        "'Weights only load failed' (only this run's own checkpoints are loaded)")

    # Like activating the venv: tools installed beside the interpreter (ffmpeg links, dora) are found.
    bindir = str(Path(spec.python).parent)
    if bindir not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    if shutil.which("ffmpeg", path=env["PATH"]) is None:
        pf.errors.append("ffmpeg is not on PATH: AudioCraft's generate stage writes samples through it — "
                         "`apt-get install ffmpeg` (Notebook A's system packages cell), or link "
                         "imageio-ffmpeg's binary as ffmpeg next to the interpreter")
    if spec.grid and shutil.which("srun", path=env["PATH"]) is None:
        pf.errors.append("dora grid submits SLURM jobs but srun is not on PATH; on a single machine "
                         "launch without --grid (dora run)")

    pf.probe = probe_python(spec.python)
    if "error" in pf.probe:
        pf.errors.append(pf.probe["error"])
    else:
        if not pf.probe.get("audiocraft"):
            pf.errors.append(f"audiocraft is not installed for {spec.python}: run Notebook A's install "
                             "cell, or `pip install -e /workspace/audiocraft`")
        if not pf.probe.get("dora"):
            pf.errors.append(f"dora is not installed for {spec.python}: `pip install dora-search`")
        xf = pf.probe.get("xformers")
        if pf.probe.get("audiocraft") and xf and xf != "ok":
            pf.errors.append(f"xformers is not importable ({xf}); AudioCraft 1.3 imports it at start-up "
                             "(audiocraft/modules/transformer.py): `pip install --no-deps xformers` — a "
                             "build for another CUDA/torch still imports, with a warning you can ignore")
        elif xf == "ok" and pf.probe.get("xformers_warning"):
            pf.notes.append("xformers imports with a warning (harmless: AudioCraft's default "
                            "efficient_attention_backend is torch)")

    probed = config_dir_from_probe(pf.probe)
    config_dir = Path(spec.config_dir) if spec.config_dir else probed
    if config_dir is None:
        pf.errors.append("cannot tell where AudioCraft's config/ is: pass --config-dir")
    else:
        if probed is not None and spec.config_dir and probed.resolve() != Path(spec.config_dir).resolve():
            pf.errors.append(f"--config-dir {spec.config_dir} is not the folder Dora reads ({probed}); "
                             "write the dset YAML there")
        if not (config_dir / "dset").is_dir():
            pf.errors.append(f"AudioCraft's config folder {config_dir} is missing (wheels lack config/): "
                             "install from a git checkout with `pip install -e`, or link the sdist's "
                             "config/ there")
        elif dset_ok:
            pf.errors.extend(check_datasource(config_dir, spec.dset, spec.overrides,
                                              Path(spec.cwd or Path.cwd())))
    pf.config_dir = config_dir
    pf.env = env
    return pf


def _account_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "audiocraft"


_XP_RE = re.compile(r"for XP ([0-9a-f]{6,})|xps/([0-9a-f]{6,})")


def launch(spec: LaunchSpec, *, dry_run: bool = False, out: TextIO | None = None,
           base_env: dict[str, str] | None = None) -> int:
    """Check, then run Dora, streaming its output to ``out`` and a log in ``<dora_dir>/launch-logs``.

    Returns Dora's exit code; 2 if a pre-flight check failed (nothing started). A dry run prints
    the checks and the exact command and returns 0 if the checks passed.
    """
    out = out or sys.stdout
    pf = preflight(spec, base_env)
    for note in pf.notes:
        print(f"note: {note}", file=out)
    for err in pf.errors:
        print(f"error: {err}", file=out)
    cmd = build_command(spec)
    cwd = Path(spec.cwd or Path.cwd())
    print(("dry run, would run" if dry_run else "running") + f" (in {cwd}):\n  {format_command(cmd, pf.env)}",
          file=out, flush=True)
    if dry_run or not pf.ok:
        if not pf.ok:
            print(f"{len(pf.errors)} pre-flight problem(s): nothing was started", file=out)
        return 0 if pf.ok else 2
    dora_dir = Path(pf.env["AUDIOCRAFT_DORA_DIR"])
    log_dir = dora_dir / "launch-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{_dt.datetime.now():%Y%m%d-%H%M%S}.log"
    sig = None
    with open(log_path, "w", encoding="utf-8") as log_fh:
        log_fh.write(format_command(cmd, pf.env) + "\n")
        proc = subprocess.Popen(cmd, env=pf.env, cwd=cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1, errors="replace")
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                out.write(line)
                out.flush()
                log_fh.write(line)
                if sig is None and (m := _XP_RE.search(line)):
                    sig = m.group(1) or m.group(2)
            rc = proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait(timeout=30)
            print("interrupted: re-run the same launch to resume from the last checkpoint", file=out)
            return 130
    print(f"dora exited with {rc}; full log: {log_path}", file=out)
    if sig:
        print(f"XP {sig}: {dora_dir / 'xps' / sig}\n  inspect: python -m training.audiocraft xp "
              f"--dora-dir {shlex.quote(str(dora_dir))} --sig {sig}", file=out)
    return rc
