"""The array every transfer test moves (exact in every float dtype), the backends installed
here, and skip marks for the ones that are not."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import anyfc

AVAILABLE = anyfc.available_backends()
BASE = np.arange(12, dtype=np.float32).reshape(4, 3)  # exact in every float dtype


def _needs(*names: str) -> list[Any]:
    missing = [n for n in names if n not in AVAILABLE]
    return [pytest.mark.skip(reason=f"backend {', '.join(missing)} not available here")] if (
        missing) else []
