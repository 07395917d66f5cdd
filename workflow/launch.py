"""``--launcher slurm|local`` for the bulk stages (s1-s4): one submitit array job whose task K runs
the same command with ``--shard-index K --shard-count N``; logs, per-shard run reports and their
merged report land in ``OUTPUT/.launch/<stage>-<time>/``. Usage: README.md, "Running s1–s4 on SLURM".
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import LaunchError, UsageError
from .files import atomic_write_text, locked

log = logging.getLogger(__name__)

LAUNCHERS = ("none", "local", "slurm")
LAUNCH_DIR = ".launch"
MERGED = "merged.json"
PLAN = "launch.json"


@dataclass(frozen=True)
class LaunchConfig:
    """What to submit: how many shards, where, with which resources."""

    launcher: str = "none"
    array: int = 1
    partition: str | None = None
    time_min: int = 240
    cpus_per_task: int | None = None
    gpus_per_task: int | None = None
    mem_gb: float | None = None
    array_parallelism: int | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    setup: tuple[str, ...] = ()
    wait: bool | None = None  # None: wait for local jobs, return at once for SLURM

    @property
    def waits(self) -> bool:
        return self.launcher == "local" if self.wait is None else self.wait


def add_launch_args(parser: argparse.ArgumentParser) -> None:
    """The cluster flags of s1-s4 (read back with :func:`config_from_args`)."""
    g = parser.add_argument_group(
        "cluster launch (submitit)",
        "run this command as an array of N shard jobs; re-submitting the same command resumes")
    g.add_argument("--launcher", choices=LAUNCHERS, default="none",
                   help="none: run here (default); slurm: submit an sbatch array; local: run the "
                        "N shard jobs on this machine through submitit (a test of the SLURM setup)")
    g.add_argument("--slurm-array", "--array", dest="slurm_array", type=int, default=None, metavar="N",
                   help="number of array tasks; task K runs --shard-index K --shard-count N")
    g.add_argument("--slurm-partition", default=None, help="sbatch --partition")
    g.add_argument("--slurm-time", type=int, default=240, metavar="MINUTES",
                   help="time limit of each task in minutes (default: 240; also the local timeout)")
    g.add_argument("--slurm-cpus-per-task", type=int, default=None, help="sbatch --cpus-per-task")
    g.add_argument("--slurm-gpus-per-task", type=int, default=None,
                   help="sbatch --gpus-per-task (with --launcher local: GPUs 0..G-1 visible to "
                        "each task; none are visible without it)")
    g.add_argument("--slurm-mem-gb", type=float, default=None, help="memory per task in GB (sbatch --mem)")
    g.add_argument("--slurm-array-parallelism", type=int, default=None, metavar="M",
                   help="at most M tasks running at once (sbatch --array=0-(N-1)%%M; default 256)")
    g.add_argument("--slurm-account", default=None, help="sbatch --account")
    g.add_argument("--slurm-qos", default=None, help="sbatch --qos")
    g.add_argument("--slurm-constraint", default=None, help="sbatch --constraint")
    g.add_argument("--slurm-setup", action="append", default=[], metavar="CMD",
                   help="shell line run before each task, e.g. 'module load cuda' (repeatable)")
    g.add_argument("--wait", action=argparse.BooleanOptionalAction, default=None,
                   help="wait for all tasks and print the merged report (default: on for local, "
                        "off for slurm, whose tasks merge the report themselves as they finish)")


def config_from_args(args: argparse.Namespace) -> LaunchConfig:
    """The launch asked for on the command line; refuses flags that contradict it."""
    cfg = LaunchConfig(
        launcher=args.launcher, array=args.slurm_array or 1, partition=args.slurm_partition,
        time_min=args.slurm_time, cpus_per_task=args.slurm_cpus_per_task,
        gpus_per_task=args.slurm_gpus_per_task, mem_gb=args.slurm_mem_gb,
        array_parallelism=args.slurm_array_parallelism, account=args.slurm_account,
        qos=args.slurm_qos, constraint=args.slurm_constraint, setup=tuple(args.slurm_setup),
        wait=args.wait)
    if cfg.launcher == "none":
        return cfg
    if args.slurm_array is None or args.slurm_array < 1:
        raise UsageError(f"--launcher {cfg.launcher} needs --slurm-array N (N >= 1): the number of "
                         "shard jobs to run")
    if args.shard_index != 0 or args.shard_count != 1:
        raise UsageError("--shard-index/--shard-count are set per task by --launcher; give only "
                         "--slurm-array N")
    if getattr(args, "dry_run", False):
        raise UsageError("--dry-run runs here and submits nothing; drop --launcher")
    if getattr(args, "report", None) is not None:
        raise UsageError("with --launcher, each shard's report and the merged report go to "
                         f"OUTPUT/{LAUNCH_DIR}/<stage>-<time>/; drop --report")
    if cfg.time_min < 1:
        raise UsageError(f"--slurm-time must be >= 1 minute, got {cfg.time_min}")
    return cfg


def slurm_parameters(cfg: LaunchConfig, stage: str) -> dict[str, Any]:
    """The ``SlurmExecutor.update_parameters`` of this launch (unset flags are left to SLURM)."""
    params: dict[str, Any] = {"job_name": f"wf-{stage}", "time": cfg.time_min}
    optional = {"partition": cfg.partition, "cpus_per_task": cfg.cpus_per_task,
                "gpus_per_task": cfg.gpus_per_task, "account": cfg.account, "qos": cfg.qos,
                "constraint": cfg.constraint, "array_parallelism": cfg.array_parallelism,
                "mem": f"{cfg.mem_gb:g}GB" if cfg.mem_gb is not None else None,
                "setup": list(cfg.setup) or None}
    params.update({k: v for k, v in optional.items() if v is not None})
    return params


def make_executor(cfg: LaunchConfig, stage: str, folder: Path) -> Any:
    """A submitit executor writing its pickles and logs under ``folder``."""
    import submitit

    if cfg.launcher == "local":
        ex = submitit.LocalExecutor(folder=folder)
        params: dict[str, Any] = {"timeout_min": cfg.time_min}
        if cfg.gpus_per_task:
            params["gpus_per_node"] = cfg.gpus_per_task
        if cfg.setup:
            params["setup"] = list(cfg.setup)
        ex.update_parameters(**params)
        return ex
    check_available(cfg)
    ex = submitit.SlurmExecutor(folder=folder)
    ex.update_parameters(**slurm_parameters(cfg, stage))
    return ex


def check_available(cfg: LaunchConfig) -> None:
    """Refuse ``--launcher slurm`` where SLURM's commands are missing (before anything is written)."""
    if cfg.launcher == "slurm" and (shutil.which("srun") is None or shutil.which("sbatch") is None):
        raise LaunchError("no SLURM on this machine (srun/sbatch not on PATH); run the command on a "
                          "login node of your cluster, or use --launcher local to run the shards here")


def task_argv(argv: Sequence[str], index: int, count: int, report: Path) -> list[str]:
    """Task K's command line: the user's, run here, on shard K (later flags win in argparse)."""
    return [*argv, "--launcher", "none", "--shard-index", str(index), "--shard-count", str(count),
            "--report", str(report), "--no-progress"]


def shard_report_path(launch_dir: Path, index: int, count: int) -> Path:
    return launch_dir / "reports" / f"shard-{index}of{count}.json"


def run_task(module: str, argv: list[str], launch_dir: str, index: int, count: int) -> int:
    """What one array task runs: the stage's CLI on its shard, then the merged report refreshed."""
    from .runner import run_cli

    main = importlib.import_module(module).main
    code = run_cli(main, argv)
    try:
        write_merged(Path(launch_dir))
    except OSError as exc:  # the shard's own report is what matters; the next task merges again
        print(f"warning: the merged report in {launch_dir} was not updated: {exc}", file=sys.stderr)
    return code


@dataclass
class MergedReport:
    """All shards' run reports of one launch, summed."""

    stage: str
    launcher: str
    launch_dir: str
    shard_count: int
    counts: dict[str, int] = field(default_factory=dict)
    shards: list[dict[str, Any]] = field(default_factory=list)
    missing_shards: list[int] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    merged: str = ""

    @property
    def complete(self) -> bool:
        return not self.missing_shards

    def exit_code(self, skip_errors: bool = False) -> int:
        return 1 if self.missing_shards or (self.failed and not skip_errors) else 0

    def summary(self) -> str:
        c = self.counts
        slowest = max((s["seconds"] for s in self.shards), default=0.0)
        lines = [f"{self.stage} on {self.shard_count} shard(s) ({self.launcher}): {c['ok']} done, "
                 f"{c['skipped']} already done, {c['failed']} failed; "
                 f"{len(self.shards)}/{self.shard_count} shards reported; slowest shard {slowest:.1f}s"]
        if self.missing_shards:
            lines.append(f"  shards without a report (still running, or failed: see "
                         f"{self.launch_dir}/logs): {', '.join(map(str, self.missing_shards))}")
        for f in self.failed[:10]:
            lines.append(f"  FAILED {f['key']} (shard {f['shard']}): {f['error']}")
        if len(self.failed) > 10:
            lines.append(f"  … and {len(self.failed) - 10} more (see {self.launch_dir}/{MERGED})")
        return "\n".join(lines)


def merge_reports(launch_dir: Path) -> MergedReport:
    """Sum the shard reports found in ``launch_dir`` (a launch made by :func:`launch_stage`)."""
    plan = json.loads((launch_dir / PLAN).read_text())
    n = int(plan["shard_count"])
    merged = MergedReport(stage=plan["stage"], launcher=plan["launcher"], launch_dir=str(launch_dir),
                          shard_count=n, jobs=plan.get("jobs", []),
                          counts={"ok": 0, "skipped": 0, "failed": 0, "total": 0},
                          merged=_dt.datetime.now().isoformat(timespec="seconds"))
    for k in range(n):
        path = shard_report_path(launch_dir, k, n)
        try:
            rep = json.loads(path.read_text())
        except FileNotFoundError:
            merged.missing_shards.append(k)
            continue
        for name in merged.counts:
            merged.counts[name] += int(rep["counts"][name])
        merged.shards.append({"shard_index": k, "report": str(path), "host": rep.get("host"),
                              "seconds": rep.get("seconds", 0.0), "counts": rep["counts"],
                              "started": rep.get("started"), "finished": rep.get("finished")})
        merged.failed.extend({"key": r["key"], "error": r["error"], "shard": k}
                             for r in rep["results"] if r["status"] == "failed")
    return merged


def write_merged(launch_dir: Path) -> MergedReport:
    """Merge under a lock (tasks finish together) and write ``merged.json`` atomically."""
    target = launch_dir / MERGED
    with locked(target):
        merged = merge_reports(launch_dir)
        data = {**merged.__dict__, "complete": merged.complete}
        atomic_write_text(target, json.dumps(data, indent=2, default=str) + "\n")
    return merged


def new_launch_dir(out_root: Path, stage: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(out_root) / LAUNCH_DIR / f"{stage}-{stamp}-{os.getpid()}"
    (path / "reports").mkdir(parents=True, exist_ok=False)
    return path


def _export_package_path() -> None:
    """Let the task interpreters import this very code (a checkout run without installing)."""
    root = str(Path(__file__).resolve().parents[1])
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *parts])


def submit(cfg: LaunchConfig, stage: str, module: str, argv: Sequence[str], launch_dir: Path) -> list[Any]:
    """Submit the array (one job per shard) and record it in ``launch.json``; returns the jobs."""
    n = cfg.array
    ex = make_executor(cfg, stage, launch_dir / "logs")
    _export_package_path()
    argvs = [task_argv(argv, k, n, shard_report_path(launch_dir, k, n)) for k in range(n)]
    plan = {"stage": stage, "launcher": cfg.launcher, "shard_count": n, "module": module,
            "argv": list(argv), "submitted": _dt.datetime.now().isoformat(timespec="seconds"),
            "parameters": slurm_parameters(cfg, stage) if cfg.launcher == "slurm" else {}}
    atomic_write_text(launch_dir / PLAN, json.dumps(plan, indent=2) + "\n")  # tasks merge from it
    try:
        jobs = ex.map_array(run_task, [module] * n, argvs, [str(launch_dir)] * n, range(n), [n] * n)
    except Exception as exc:  # noqa: BLE001 - sbatch's refusal (bad partition, limits) comes as many types
        raise LaunchError(f"submitting {n} {cfg.launcher} job(s) failed: {exc}") from exc
    plan["jobs"] = [{"shard_index": k, "job_id": j.job_id, "stdout": str(j.paths.stdout),
                     "stderr": str(j.paths.stderr)} for k, j in enumerate(jobs)]
    atomic_write_text(launch_dir / PLAN, json.dumps(plan, indent=2) + "\n")
    return jobs


def wait_for(jobs: Sequence[Any], poll_s: float = 1.0) -> list[str]:
    """Wait for every job; returns one line per job that did not finish cleanly."""
    problems = []
    for k, job in enumerate(jobs):
        while not job.done():
            time.sleep(poll_s)
        exc = job.exception()
        if exc is not None:
            problems.append(f"shard {k} (job {job.job_id}) failed; its log: {job.paths.stderr}")
            log.debug("shard %d failed: %s", k, exc)
    return problems


# -- the CLI side (prints, like runner.print_report) ------------------------------------------------
def launch_stage(stage: str, module: str, argv: Sequence[str] | None, args: argparse.Namespace,
                 out_root: Path) -> int | None:
    """If ``--launcher`` asks for it, submit this command as shard jobs and return the exit code;
    ``None`` means "run here" (no launcher, or this is already one of the tasks)."""
    cfg = config_from_args(args)
    if cfg.launcher == "none":
        return None
    from .dist import dist_info

    if dist_info().world_size > 1:
        raise UsageError("torchrun and --launcher are two ways to shard a run; use one of them")
    check_available(cfg)
    argv = list(sys.argv[1:] if argv is None else argv)
    launch_dir = new_launch_dir(out_root, stage)
    jobs = submit(cfg, stage, module, argv, launch_dir)
    ids = sorted({str(j.job_id).split("_")[0] for j in jobs})
    print(f"submitted {len(jobs)} {cfg.launcher} task(s) of {stage} (job {', '.join(ids)}); "
          f"logs and reports: {launch_dir}")
    if not cfg.waits:
        print(f"each task refreshes {launch_dir / MERGED} as it finishes; re-submit the same "
              "command to resume (finished files are skipped)")
        return 0
    try:
        problems = wait_for(jobs)
    except KeyboardInterrupt:
        print(f"stopped waiting; the tasks go on. Their merged report: {launch_dir / MERGED}",
              file=sys.stderr)
        return 130
    merged = write_merged(launch_dir)
    print(merged.summary())
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    print(f"merged report: {launch_dir / MERGED}")
    return 1 if problems else merged.exit_code(getattr(args, "skip_errors", False))
