"""Build, extend, load and verify the Hugging Face ``DatasetDict`` of token files (s5).

Re-exports the API of :mod:`.read` (paths, metadata, loading, token headers,
:func:`arrow_row_to_numpy`), :mod:`.splits`, :mod:`.schema`, :mod:`.config`, :mod:`.builder`,
:mod:`.card` and :mod:`.verify`. Importing it does not import ``datasets`` or torch. The dataset
folder's layout: README.md, "File formats".
"""

from __future__ import annotations

from .builder import build, build_dataset
from .card import render_card
from .config import BuildConfig, BuildResult, VerifyError
from .read import arrow_row_to_numpy, load_dataset_dir, read_dataset_meta, read_token_header, resolve_path
from .schema import (
    CARD_FILE,
    COLUMN_DOCS,
    COLUMN_TYPES,
    DEFAULT_RATIOS,
    FORMAT_NAME,
    FORMAT_VERSION,
    MATERIALIZE_MODES,
    META_FILE,
    REPORTS_DIR,
    STAGE,
    dataset_features,
)
from .splits import assign_split, check_split_name, parse_split_ratios
from .verify import verify_dataset

# To monkeypatch a helper, patch it in the submodule that defines and calls it (e.g.
# ``workflow.hfdata.builder.verify_dataset``): a patch on this package would not be seen by the code.

__all__ = [
    "BuildConfig", "BuildResult", "CARD_FILE", "COLUMN_TYPES", "META_FILE", "MATERIALIZE_MODES",
    "VerifyError", "arrow_row_to_numpy", "assign_split", "build", "build_dataset",
    "dataset_features", "load_dataset_dir", "parse_split_ratios", "read_dataset_meta",
    "read_token_header", "render_card", "resolve_path", "verify_dataset",
]
