"""``eval --save-wavs DIR``: each evaluated window's reference, oracle and prediction as wav files,
and ``DIR/index.html`` with their players side by side and the window's metrics (README.md,
"midigroove_poc", **Listening**)."""

from __future__ import annotations

import html
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from workflow.files import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

__all__ = ["Listening"]

_STYLE = ("body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}"
          "audio{width:220px}dl{margin:0;font-size:90%}dt{float:left;clear:left;margin-right:.5em}")


def _safe(text: str) -> str:
    """A file-name-safe version of ``text`` (letters, digits, ``._-``; others become ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "x"


def _cell(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return "nan" if math.isnan(value) else f"{float(value):.4f}"
    return str(value)


@dataclass
class Listening:
    """Collects the wavs of evaluated windows under ``out_dir``; :meth:`write_index` writes the page."""

    out_dir: Path
    entries: list[dict[str, Any]] = field(default_factory=list)

    def add(self, system: str, row_key: str, window_index: int, sample_rate: int,
            audios: dict[str, np.ndarray], metrics: dict[str, Any]) -> None:
        """Write ``audios`` (label → mono audio, e.g. ref / oracle / prediction) as wavs of one window."""
        import soundfile as sf

        folder = f"{len(self.entries):04d}_{_safe(system)}_{_safe(row_key)}_w{int(window_index)}"
        files = {}
        for label, audio in audios.items():
            rel = f"wavs/{folder}/{_safe(label)}.wav"
            path = self.out_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                sf.write(tmp, np.asarray(audio, dtype=np.float32), int(sample_rate), format="WAV")
            files[label] = rel
        numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)}
        self.entries.append({"system": system, "item": f"{row_key} #{int(window_index)}", "files": files,
                             "metrics": numbers})

    def write_index(self, title: str = "midigroove_poc eval") -> Path:
        """``index.html``: one row per window, a player per wav (relative links), then its metrics."""
        labels = list(dict.fromkeys(label for e in self.entries for label in e["files"]))
        head = "".join(f"<th>{html.escape(x)}</th>" for x in ["system", "item", *labels, "metrics"])
        rows = []
        for e in self.entries:
            cells = [f"<td>{html.escape(e['system'])}</td>", f"<td>{html.escape(e['item'])}</td>"]
            for label in labels:
                rel = e["files"].get(label)
                cells.append(f'<td><audio controls preload="none" src="{html.escape(quote(rel))}"></audio></td>'
                             if rel else "<td></td>")
            dl = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(_cell(v))}</dd>" for k, v in e["metrics"].items())
            cells.append(f"<td><dl>{dl}</dl></td>")
            rows.append("<tr>" + "".join(cells) + "</tr>")
        page = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
                f"<style>{_STYLE}</style></head><body>\n<h1>{html.escape(title)}</h1>\n"
                f"<table>\n<tr>{head}</tr>\n" + "\n".join(rows) + "\n</table>\n</body></html>\n")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        index = self.out_dir / "index.html"
        atomic_write_text(index, page)
        log.info("listening page: %s (%d windows)", index, len(self.entries))
        return index
