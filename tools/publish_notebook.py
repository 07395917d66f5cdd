"""Turn a papermill-executed notebook into the copy committed under notebooks/: drop the injected
parameters cell and papermill's metadata, join the stream chunks a cell printed, map this
machine's paths to the pod's (--replace OLD=NEW, longest first), and refuse if any --forbid
string is left in an output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat


class PublishError(Exception):
    """A path of the machine that ran the notebook is still in its outputs."""


def join_streams(outputs: list) -> list:
    """Adjacent stream outputs of one name as one (a path may be split across chunks)."""
    joined: list = []
    for out in outputs:
        prev = joined[-1] if joined else None
        if (out.get("output_type") == "stream" and prev is not None and prev.get("output_type") == "stream"
                and prev.get("name") == out.get("name")):
            prev["text"] += out["text"]
        else:
            joined.append(out)
    return joined


def publish(nb: nbformat.NotebookNode, replacements: dict[str, str],
            forbid: tuple[str, ...] = ()) -> nbformat.NotebookNode:
    """The cleaned notebook (``nb`` is modified in place and returned)."""
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    nb.metadata.pop("papermill", None)
    order = sorted(replacements, key=len, reverse=True)

    def clean(text: str) -> str:
        for old in order:
            text = text.replace(old, replacements[old])
        return text

    for i, cell in enumerate(nb.cells):
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if "outputs" in cell:
            cell.outputs = join_streams(cell.outputs)
        for out in cell.get("outputs", []):
            if "text" in out:
                out["text"] = clean(out["text"])
            for key, value in out.get("data", {}).items():
                if key.startswith("text/"):
                    out["data"][key] = clean(value)
            if "evalue" in out:
                out["evalue"] = clean(out["evalue"])
            left = [f for f in forbid if f in str(out)]
            if left:
                raise PublishError(f"cell {i}: output still contains {left}; add a --replace for it")
    return nb


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("executed", type=Path)
    ap.add_argument("dest", type=Path)
    ap.add_argument("--replace", action="append", default=[], metavar="OLD=NEW")
    ap.add_argument("--forbid", action="append", default=[], metavar="TEXT")
    args = ap.parse_args(argv)
    repl = dict(r.split("=", 1) for r in args.replace)
    try:
        nb = publish(nbformat.read(args.executed, as_version=4), repl, tuple(args.forbid))
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    from workflow.files import atomic_write_text

    atomic_write_text(args.dest, nbformat.writes(nb) + "\n")
    print(f"{args.dest}: {len(nb.cells)} cells")
    return 0


if __name__ == "__main__":
    sys.exit(main())
