"""The training toolkit's historical import path: a re-export of :mod:`training.core`.

``from training.utils import CheckpointManager, fit, ...`` keeps working for every public name
(and the format constants); new code may import from :mod:`training.core` or its modules
(:mod:`training.core.checkpoint`, :mod:`training.core.loop`, ...). See :mod:`training.core` for
the toolkit's overview and the batch layout rule.
"""

from __future__ import annotations

from training.core import *  # noqa: F401,F403 - every public name of the toolkit
from training.core import (  # noqa: F401 - the checkpoint/metrics file-format constants
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    METRICS_FORMAT,
    METRICS_VERSION,
)
from training.core import __all__  # noqa: F401
