"""The producer protocol's loader: resolving names, importing, validating answers, help, activation."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import pytest

import paramproducers as pp
from workflow.errors import ProducerError, UsageError


def _write(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / f"{name}.py"
    p.write_text(textwrap.dedent(body))
    return p


def test_resolve_order_and_errors(tmp_path: Path) -> None:
    assert pp.resolve("const") == pp.ProducerRef("const", "builtin", "paramproducers.const")
    _write(tmp_path, "const", '"""Mine."""\ndef produce(e, T, *, args):\n    return {}\n')
    mine = pp.resolve("const", tmp_path)  # the producers dir wins (with a warning)
    assert mine.kind == "file" and mine.target == str((tmp_path / "const.py").resolve())
    assert pp.resolve(str(tmp_path / "const.py")).kind == "file"
    assert pp.resolve("paramproducers.examples.beat_phase").kind == "module"
    with pytest.raises(UsageError, match="built-in.*const.*lin"):
        pp.resolve("nope", tmp_path)
    with pytest.raises(UsageError, match="cannot be imported"):
        pp.resolve("no_such_pkg.mod")
    with pytest.raises(UsageError, match="not found"):
        pp.resolve("missing.py")
    with pytest.raises(UsageError, match="not a folder"):
        pp.resolve("const", tmp_path / "absent")


def test_import_failures_name_the_producer(tmp_path: Path) -> None:
    _write(tmp_path, "broken", "import does_not_exist\n")
    _write(tmp_path, "noproduce", '"""No produce."""\n')
    with pytest.raises(ProducerError, match="'broken'.*failed to import.*ModuleNotFoundError"):
        pp.load("broken", tmp_path)
    with pytest.raises(ProducerError, match="'noproduce'.*no produce"):
        pp.load("noproduce", tmp_path)
    with pytest.raises(UsageError, match="given twice"):
        pp.load_all(["lin", "lin"])


def test_normalise_output_checks_the_answer() -> None:
    out = pp.normalise_output({"a": [1, 2], "b": {"values": 3, "units": "u", "min": 0, "max": 5}}, "p", "f.ecdc")
    assert out["a"][1].producer == "p" and out["a"][1].range_from == "data"
    vals, info = out["b"]
    assert float(vals) == 3.0 and (info.units, info.min, info.max, info.range_from) == ("u", 0.0, 5.0, "producer")
    for bad, msg in [([1], "expected a dict"), ({"a": {"units": "x"}}, "without 'values'"),
                     ({"a": {"values": [1], "unit": "x"}}, "unknown key"),
                     ({"a": {"values": [1], "min": 0}}, "only one of min/max"),
                     ({"a": {"values": [1], "min": 2, "max": 1}}, "invalid range"),
                     ({"": [1]}, "invalid feature name"), ({"a": ["x"]}, "non-numeric")]:
        with pytest.raises(ProducerError, match=msg) as e:
            pp.normalise_output(bad, "p", "f.ecdc")
        assert "f.ecdc: producer 'p'" in str(e.value)


def test_produce_errors_are_wrapped(tmp_path: Path) -> None:
    _write(tmp_path, "raiser", '''
        """Raises."""
        def produce(ecdc_path, T, *, args):
            raise ValueError("bad input")
        ''')
    prod = pp.load("raiser", tmp_path)
    with pytest.raises(ProducerError, match=r"x\.ecdc: producer 'raiser' failed: ValueError: bad input"):
        prod.produce(Path("x.ecdc"), 3, argparse.Namespace())


def test_listing_shows_only_producers_that_load(tmp_path: Path) -> None:
    _write(tmp_path, "explosive", '"""Summary line.\n\nMore."""\nraise SystemExit("imported!")\n')
    _write(tmp_path, "relative", '"""Needs a package."""\nfrom .helpers import X\ndef produce(e, T, *, args):\n    return {}\n')
    _write(tmp_path, "good", '"""Works."""\ndef produce(e, T, *, args):\n    return {}\n')
    _write(tmp_path, "_private", '"""Hidden."""\n')
    rows = pp.available(tmp_path)
    assert [r.name for r in rows] == [*pp.BUILTINS, "explosive", "good", "relative"]
    assert [r.name for r in rows if r.error is None] == [*pp.BUILTINS, "good"]
    broken = {r.name: r.error for r in rows if r.error is not None}
    assert "SystemExit" in broken["explosive"] and "relative import" in broken["relative"]
    text = pp.format_listing(rows)
    usable, _, unusable = text.partition("not usable")
    assert "built-in producers:" in usable and f"producers in {tmp_path}:" in usable
    assert "  good" in usable and "explosive" not in usable and "relative" not in usable
    assert "  explosive" in unusable and "  relative" in unusable


def _package(folder: Path) -> None:
    """A producers folder laid out like the repository's ``paramproducers/``: relative imports."""
    _write(folder, "__init__", '"""My producers."""\n')
    _write(folder, "scale", '"""Shared constants."""\nFACTOR = 3.0\n')
    _write(folder, "tripled", '''
        """Uses a sibling module through a relative import."""
        from .scale import FACTOR
        def produce(ecdc_path, T, *, args):
            return {"tripled": [FACTOR] * T}
        ''')


def test_a_package_folder_loads_with_relative_imports(tmp_path: Path) -> None:
    _package(tmp_path / "prods")
    prod = pp.load("tripled", tmp_path / "prods")
    assert prod.ref.kind == "file" and prod.module.__name__.endswith(".tripled")
    assert prod.produce(Path("x.ecdc"), 2, argparse.Namespace())["tripled"][0].tolist() == [3.0, 3.0]
    rows = {r.name: r for r in pp.available(tmp_path / "prods")}
    assert rows["tripled"].error is None and rows["scale"].error is not None  # no produce()
    again = pp.load_ref(prod.ref)  # what a spawned worker does: the same module, not a second copy
    assert again.module is prod.module


def test_the_repositorys_own_folder_is_the_built_in_package() -> None:
    """``--producers-dir ./paramproducers`` in a clone: lin.py's ``from .const import`` works."""
    folder = Path(pp.__file__).parent
    for name in ("lin", "from_filename"):
        ref = pp.resolve(name, folder)
        assert ref == pp.ProducerRef(name, "builtin", f"paramproducers.{name}")
        assert pp.load(name, folder).module is pp.load(name).module
    assert pp.resolve(str(folder / "lin.py")).kind == "builtin"
    ex = pp.resolve("beat_phase", folder / "examples")
    assert ex == pp.ProducerRef("beat_phase", "module", "paramproducers.examples.beat_phase")
    rows = pp.available(folder)
    assert [r.name for r in rows] == list(pp.BUILTINS) and all(r.error is None for r in rows)


def test_a_copy_of_the_repositorys_folder_loads_as_a_private_package(tmp_path: Path) -> None:
    """A clone's ``./paramproducers`` that is not the installed package (non-editable install)."""
    import shutil

    copy = tmp_path / "paramproducers"
    shutil.copytree(Path(pp.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__", "examples"))
    lin = pp.load("lin", copy)
    assert lin.ref.kind == "file" and lin.module.__name__.startswith("_wf_producers_")
    args = argparse.Namespace(lin=["r=0:1"])
    lin.init(args)
    assert lin.produce(Path("x.ecdc"), 3, args)["r"][0].tolist() == [0.0, 0.5, 1.0]
    rows = pp.available(copy)
    assert {r.name for r in rows if r.origin == str(copy) and r.error is None} == set(pp.BUILTINS)


def test_describe_shows_doc_and_flags() -> None:
    text = pp.describe(pp.load("lin"))
    assert text.startswith("lin (built-in)") and "Linear ramps" in text and "--lin NAME=START:END" in text


def test_activation_inits_once_and_shuts_down_in_reverse(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    for name in ("one", "two"):
        _write(tmp_path, name, f'''
            """{name}."""
            from pathlib import Path
            def init(args):
                with open(args.log, "a") as fh: fh.write("init {name}\\n")
            def shutdown(args):
                with open(args.log, "a") as fh: fh.write("shutdown {name}\\n")
            def produce(ecdc_path, T, *, args):
                return {{"{name}": [0.0] * T}}
            ''')
    args = argparse.Namespace(log=str(log))
    prods = pp.load_all(["one", "two"], tmp_path)
    pp.activate(prods, args)
    assert pp.ensure_active(prods[0].ref, args) is prods[0]  # already active: no second init
    pp.deactivate(args)
    assert log.read_text().split("\n")[:-1] == ["init one", "init two", "shutdown two", "shutdown one"]
    again = pp.ensure_active(prods[1].ref, args)  # a fresh process: import + init on first use
    assert again.name == "two" and log.read_text().endswith("init two\n")
    pp.deactivate(args)
    assert not pp._ACTIVE


def test_failed_init_shuts_down_the_started_ones(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    _write(tmp_path, "ok", '''
        """ok."""
        def init(args): open(args.log, "a").write("init ok\\n")
        def shutdown(args): open(args.log, "a").write("shutdown ok\\n")
        def produce(ecdc_path, T, *, args): return {}
        ''')
    _write(tmp_path, "bad", '''
        """bad."""
        def init(args): raise RuntimeError("no model")
        def produce(ecdc_path, T, *, args): return {}
        ''')
    args = argparse.Namespace(log=str(log))
    with pytest.raises(ProducerError, match="'bad' failed in init.*RuntimeError: no model"):
        pp.activate(pp.load_all(["ok", "bad"], tmp_path), args)
    assert log.read_text() == "init ok\nshutdown ok\n" and not pp._ACTIVE
