"""runner.py: skip-done, sharding, dry-run, workers, per-item errors, report and pipeline."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from workflow.files import discover, mirror_path, relative_key
from workflow.runner import (
    FAILED, OK, SKIPPED, RunOptions, Runner, WorkItem, bounded_map,
)

from ._runner_fns import copy_upper, crash_on_kill, slow_pid


def _tree(tmp_path: Path, contents: dict[str, str]) -> tuple[Path, Path, list[WorkItem]]:
    src, out = tmp_path / "in", tmp_path / "out"
    for rel, text in contents.items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    items = [WorkItem(relative_key(p, src), p, mirror_path(p, src, out, ".out"))
             for p in discover(src, ".txt")]
    return src, out, items


def test_map_errors_do_not_stop_others_and_report(tmp_path: Path) -> None:
    _, out, items = _tree(tmp_path, {"a.txt": "hello", "b/c.txt": "bad", "d.txt": "bug", "e.txt": "ok"})
    report_path = tmp_path / "r.json"
    rep = Runner("t", RunOptions(report=report_path, progress=False), {"k": 1}).map(items, copy_upper)
    status = {r.key: r.status for r in rep.results}
    assert status == {"a.txt": OK, "b/c.txt": FAILED, "d.txt": FAILED, "e.txt": OK}
    assert (out / "a.out").read_text() == "HELLO" and (out / "e.out").read_text() == "OK"
    assert not (out / "b" / "c.out").exists()
    errs = {r.key: r.error for r in rep.failed}
    assert "cannot decode" in errs["b/c.txt"] and "ZeroDivisionError" in errs["d.txt"]
    assert rep.exit_code() == 1 and rep.exit_code(skip_errors=True) == 0
    data = json.loads(report_path.read_text())
    assert data["counts"] == {"ok": 2, "skipped": 0, "failed": 2, "total": 4}
    assert data["params"] == {"k": 1} and data["stage"] == "t"
    assert "FAILED b/c.txt" in rep.summary()


def test_resume_skips_done_and_overwrite_redoes(tmp_path: Path) -> None:
    _, out, items = _tree(tmp_path, {"a.txt": "x", "b.txt": "y"})
    Runner("t", RunOptions(progress=False)).map(items[:1], copy_upper)
    (out / "a.out").write_text("KEEP")
    rep = Runner("t", RunOptions(progress=False)).map(items, copy_upper)
    assert {r.key: r.status for r in rep.results} == {"a.txt": SKIPPED, "b.txt": OK}
    assert (out / "a.out").read_text() == "KEEP"
    rep = Runner("t", RunOptions(progress=False, overwrite=True)).map(items, copy_upper)
    assert rep.ok == 2 and (out / "a.out").read_text() == "X"


def test_custom_is_done(tmp_path: Path) -> None:
    _, out, items = _tree(tmp_path, {"a.txt": "x"})
    out.mkdir()
    (out / "a.out").write_text("")  # exists but invalid → must be redone
    rep = Runner("t", RunOptions(progress=False)).map(
        items, copy_upper, is_done=lambda it: it.dst.exists() and it.dst.stat().st_size > 0)
    assert rep.ok == 1 and (out / "a.out").read_text() == "X"


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    _, out, items = _tree(tmp_path, {"a.txt": "x", "b.txt": "y"})
    rep = Runner("t", RunOptions(progress=False, dry_run=True, report=tmp_path / "r.json")).map(items, copy_upper)
    assert rep.params["would_process"] == ["a.txt", "b.txt"]
    assert not out.exists() and not (tmp_path / "r.json").exists()


def test_shards_cover_everything_once(tmp_path: Path) -> None:
    _, out, items = _tree(tmp_path, {f"d{i % 3}/f{i}.txt": "x" for i in range(30)})
    seen = []
    for k in range(3):
        rep = Runner("t", RunOptions(progress=False, shard_index=k, shard_count=3)).map(items, copy_upper)
        seen += [r.key for r in rep.results]
    assert sorted(seen) == sorted(it.key for it in items)
    assert len(list(out.rglob("*.out"))) == 30


def test_process_workers_run_in_parallel(tmp_path: Path) -> None:
    _, out, items = _tree(tmp_path, {f"f{i}.txt": "x" for i in range(8)})
    rep = Runner("t", RunOptions(progress=False, workers=2)).map(items, slow_pid)
    assert rep.ok == 8
    assert len({r.info["pid"] for r in rep.results}) == 2  # two worker processes did the work


def test_dead_worker_fails_only_its_item(tmp_path: Path) -> None:
    contents = {f"f{i}.txt": "ok" for i in range(10)}
    contents["f3.txt"] = "kill"
    _, out, items = _tree(tmp_path, contents)
    rep = Runner("t", RunOptions(progress=False, workers=2)).map(items, crash_on_kill)
    assert [r.key for r in rep.failed] == ["f3.txt"]
    assert "worker process died" in rep.failed[0].error
    assert rep.ok == 9 and len(list(out.glob("*.out"))) == 9


def test_bounded_map_limits_in_flight_and_keeps_order() -> None:
    import concurrent.futures as cf
    live, peak, lock = 0, 0, threading.Lock()

    def work(x: int) -> int:
        nonlocal live, peak
        with lock:
            live += 1
            peak = max(peak, live)
        time.sleep(0.01 * (x % 3))
        with lock:
            live -= 1
        return x * 2

    with cf.ThreadPoolExecutor(8) as pool:
        got = [f.result() for _, f in bounded_map(pool, lambda x: (work, x), range(40), 3, ordered=True)]
    assert got == [2 * x for x in range(40)]
    assert peak <= 3


class _Sink:
    """A batch-of-3 sink that fails the whole batch containing 'bad'."""

    def __init__(self) -> None:
        self.batch: list = []
        self.batches: list[list[str]] = []

    def add(self, item, payload):
        self.batch.append((item, payload))
        return self._emit() if len(self.batch) == 3 else []

    def flush(self):
        return self._emit()

    def _emit(self):
        batch, self.batch = self.batch, []
        if not batch:
            return []
        self.batches.append([it.key for it, _ in batch])
        if any(p == "bad" for _, p in batch):
            return [(it, ValueError("batch failed")) for it, _ in batch]
        return [(it, {"len": len(p)}) for it, p in batch]


def test_pipeline_orders_batches_and_reports_load_errors(tmp_path: Path) -> None:
    _, _, items = _tree(tmp_path, {f"f{i}.txt": "x" * (10 - i) for i in range(7)})

    def load(it: WorkItem) -> str:
        if it.key == "f2.txt":
            raise OSError("unreadable")
        return it.src.read_text()

    sink = _Sink()
    rep = Runner("t", RunOptions(progress=False, workers=3)).pipeline(
        items, load, sink, order=lambda todo: sorted(todo, key=lambda it: it.src.stat().st_size))
    assert {r.key: r.status for r in rep.results} == {
        f"f{i}.txt": (FAILED if i == 2 else OK) for i in range(7)}
    # Sorted shortest first, the load failure removed, and batches of 3 in that order.
    assert sink.batches == [["f6.txt", "f5.txt", "f4.txt"], ["f3.txt", "f1.txt", "f0.txt"]]
    assert {r.key: r.info.get("len") for r in rep.results if r.status == OK}["f0.txt"] == 10


def test_pipeline_sink_that_drops_items_is_reported(tmp_path: Path) -> None:
    _, _, items = _tree(tmp_path, {"a.txt": "x", "b.txt": "y"})

    class Forgetful:
        def add(self, item, payload):
            return []

        def flush(self):
            return []

    rep = Runner("t", RunOptions(progress=False)).pipeline(items, lambda it: 1, Forgetful())
    assert len(rep.failed) == 2 and "never completed" in rep.failed[0].error


def test_workers_must_be_positive() -> None:
    import argparse

    from workflow.errors import UsageError
    from workflow.runner import add_runner_args, options_from_args

    p = argparse.ArgumentParser()
    add_runner_args(p)
    with pytest.raises(UsageError):
        options_from_args(p.parse_args(["--workers", "0"]), "t", None)
    o = options_from_args(p.parse_args(["--shard-index", "1", "--shard-count", "2"]), "s1", Path("/o"))
    assert o.report is not None and o.report.parent == Path("/o/.reports") and "shard1of2" in o.report.name


def test_runner_args_subset_in_a_stage_group_with_its_own_help() -> None:
    """What s5 and the audit use: some shared flags, in their group, worded for the stage."""
    import argparse

    from workflow.runner import add_runner_args

    p = argparse.ArgumentParser()
    g = p.add_argument_group("run control")
    add_runner_args(p, workers_default=3, group=g, only=("workers", "verbose"),
                    helps={"workers": "threads that read files"})
    assert [a.dest for a in g._group_actions] == ["workers", "verbose"]
    assert g._group_actions[0].help == "threads that read files"
    args = p.parse_args(["-vv"])
    assert args.workers == 3 and args.verbose == 2 and not hasattr(args, "shard_index")
    with pytest.raises(SystemExit):
        p.parse_args(["--dry-run"])
    with pytest.raises(ValueError, match="no_such"):
        add_runner_args(argparse.ArgumentParser(), only=("no_such",))


def test_run_cli_turns_machine_os_errors_into_one_line(tmp_path: Path, capsys) -> None:
    """Issue 13 item 14: ENOSPC / EACCES from any CLI: exit 1 and a line naming the path."""
    import errno
    import os

    from workflow.runner import run_cli

    def full(argv):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "x.npy"))

    assert run_cli(full, []) == 1
    assert capsys.readouterr().err == f"error: {tmp_path / 'x.npy'}: no space left on device; " \
                                      "free some space or write to another disk\n"

    def bug(argv):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "y")

    with pytest.raises(FileNotFoundError):  # not the machine's fault: keep the traceback
        run_cli(bug, [])


def test_thread_pool_takes_items_in_chunks_and_reports_each(tmp_path: Path, monkeypatch) -> None:
    """Light items go to threads in chunks (fewer futures and wake-ups) that shrink as the queue
    drains; every item still gets its own result and a failing item only fails itself."""
    from workflow import runner as R

    contents = {f"d{i // 50}/f{i:04d}.txt": ("bad" if i % 97 == 0 else "x") for i in range(600)}
    _, out, items = _tree(tmp_path, contents)
    tasks: list[int] = []
    real = R._run_chunk

    def counting(fn, chunk):
        tasks.append(len(chunk))
        return real(fn, chunk)

    monkeypatch.setattr(R, "_run_chunk", counting)
    rep = Runner("t", RunOptions(workers=2, progress=False), {}).map(items, copy_upper, executor="thread")
    assert sorted(r.key for r in rep.results) == sorted(contents)  # each once
    failed = {r.key for r in rep.failed}
    assert failed == {k for k, v in contents.items() if v == "bad"}
    assert all((out / k.replace(".txt", ".out")).read_text() == "X" for k in contents if k not in failed)
    assert sum(tasks) == 600 and max(tasks) == R.THREAD_CHUNK and len(tasks) < 600 / 5
    assert tasks.count(1) >= 2 * 8  # the tail goes one item at a time: no thread waits on a long chunk


def test_report_is_written_one_result_at_a_time_as_the_same_json(tmp_path: Path) -> None:
    from workflow.runner import ItemResult, RunReport

    rep = RunReport("t", {"path": tmp_path, "n": 3}, "2026-12-03T12:00:00")
    for results in ([], [ItemResult("a", OK, 0.5, {"frames": 7, "flags": ["x"]}),
                         ItemResult("b/é", FAILED, 0.1, error='bad "quote"\nline')]):
        rep.results = results
        rep.write(tmp_path / "r.json")
        got = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
        assert got == json.loads(json.dumps(rep.to_dict(), default=str))
        assert got["counts"]["total"] == len(results) and got["params"]["path"] == str(tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name != "r.json"]  # no temp left behind
