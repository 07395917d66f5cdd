"""Regenerate the exact-version locks that `make install` and `make test-audiocraft` install from.

Run through `make lock`. uv resolves (fast, and `--python-version`/`--python-platform` make the
result independent of the machine that runs it). torch itself stays pinned in constraints.txt,
and the wheels that a torch *build* brings along (CUDA runtimes, triton) are left out of the
lock, so the same lock serves the CPU and the CUDA build of the pinned torch.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON_VERSION = "3.11"
PLATFORM = "x86_64-manylinux_2_28"
# Companions of one torch build: torch pins them exactly itself, and the CPU build has none.
TORCH_BUILD = re.compile(r"^(nvidia-.*|cuda-.*|triton)$")

LOCKS = {
    "requirements/lock.txt": ["pyproject.toml", "--extra", "dev", "--extra", "bench", "requirements/tools.in"],
    "requirements/audiocraft.lock.txt": ["requirements/audiocraft.in"],
}


def split_blocks(text: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """The header lines, then (package name, its lines incl. '# via' comments) for each pin."""
    header: list[str] = []
    blocks: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==", line)
        if m:
            blocks.append((m.group(1).lower(), [line]))
        elif blocks:
            blocks[-1][1].append(line)
        else:
            header.append(line)
    return header, blocks


def drop_torch_build(text: str) -> tuple[str, list[str]]:
    """Remove the pins of the wheels that come with a particular torch build."""
    header, blocks = split_blocks(text)
    kept, dropped = [], []
    for name, lines in blocks:
        (dropped if TORCH_BUILD.match(name) else kept).append((name, lines))
    out = header + [line for _, lines in kept for line in lines]
    return "\n".join(out).rstrip("\n") + "\n", [name for name, _ in dropped]


def compile_lock(uv: str, output: str, inputs: list[str], upgrade: bool) -> None:
    cmd = [uv, "pip", "compile", *inputs, "--constraint", "constraints.txt",
           "--python-version", PYTHON_VERSION, "--python-platform", PLATFORM,
           "--no-emit-package", "torch", "--custom-compile-command", "make lock",
           "--index-url", "https://pypi.org/simple", "--no-config", "--quiet"]
    if upgrade:
        cmd.append("--upgrade")
    out_path = REPO / output
    cmd += ["--output-file", output]  # uv keeps the pins already in it unless --upgrade
    subprocess.run(cmd, cwd=REPO, check=True)
    text, dropped = drop_torch_build(out_path.read_text())
    out_path.write_text(text)
    n = sum(1 for line in text.splitlines() if re.match(r"^[A-Za-z0-9_.\-]+==", line))
    print(f"{output}: {n} packages pinned" + (f" (left to torch's build: {', '.join(dropped)})" if dropped else ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--uv", default="uv", help="the uv executable (make lock passes the venv's)")
    ap.add_argument("--upgrade", action="store_true",
                    help="move every pin to the newest version that resolves (default: keep pins that still fit)")
    args = ap.parse_args(argv)
    for output, inputs in LOCKS.items():
        compile_lock(args.uv, output, inputs, args.upgrade)
    return 0


if __name__ == "__main__":
    sys.exit(main())
