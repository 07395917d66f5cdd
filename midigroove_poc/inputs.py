"""Model-input ablations (upstream's --no-vel / --no-sustain / --no-hh-cc4 / --no-kit-name): which
grid columns a model sees and whether it is told the kit. Stored in the checkpoint, so training,
eval and predict feed a model the same input. The flags: README.md, "midigroove_poc"."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from workflow.errors import UsageError

#: ablation → how a grid column belongs to it
_GROUPS = {
    "vel": lambda name: name.startswith("vel_"),
    "sustain": lambda name: name.startswith("sustain_"),
    "hh_cc4": lambda name: name == "hat_openness",
}


@dataclass(frozen=True)
class InputSpec:
    """What the model is given: velocity, sustain and hi-hat CC4 columns, and the kit id."""

    vel: bool = True
    sustain: bool = True
    hh_cc4: bool = True
    kit: bool = True

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> InputSpec:
        """The spec a checkpoint stored (None or {}: everything, as before ablations existed)."""
        return cls(**{k: bool(v) for k, v in (d or {}).items() if k in cls.__dataclass_fields__})

    def as_dict(self) -> dict[str, bool]:
        return asdict(self)

    @property
    def full(self) -> bool:
        return all(self.as_dict().values())

    def dropped(self, names: Sequence[str]) -> list[str]:
        """The columns of ``names`` this spec removes."""
        off = [group for group, keep in self.as_dict().items() if not keep and group in _GROUPS]
        return [n for n in names if any(_GROUPS[g](n) for g in off)]

    def keep_index(self, names: Sequence[str], n_columns: int) -> np.ndarray | None:
        """Indices of the kept columns of a grid with ``names`` (None: keep all ``n_columns``)."""
        drop = set(self.dropped(names))
        if not (self.vel and self.sustain and self.hh_cc4) and not names:
            raise UsageError("this cache does not name its grid columns, so --no-vel / --no-sustain / "
                             "--no-hh-cc4 cannot find them; rebuild the cache with midigroove_poc")
        if names and len(names) != n_columns:
            raise UsageError(f"the cache names {len(names)} grid columns but its rows have {n_columns}; "
                             "rebuild the cache")
        if not drop:
            return None
        return np.array([i for i, n in enumerate(names) if n not in drop], dtype=np.int64)

    def kept_names(self, names: Sequence[str]) -> list[str]:
        drop = set(self.dropped(names))
        return [n for n in names if n not in drop]

    def select(self, grid: Any, names: Sequence[str]) -> Any:
        """``grid[..., kept columns]`` (numpy array or torch tensor)."""
        idx = self.keep_index(names, int(grid.shape[-1]))
        if idx is None:
            return grid
        if isinstance(grid, np.ndarray):
            return grid[..., idx]
        import torch
        return grid.index_select(-1, torch.as_tensor(idx, device=grid.device))

    def kit_ids(self, kit_id: Any) -> Any:
        """``kit_id`` unchanged, or all zeros with ``kit=False`` (the model is not told the kit)."""
        return kit_id if self.kit else kit_id * 0
