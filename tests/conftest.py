import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPADE_SHARED", REPO.parent / "shared"))
OFFICIAL = SHARED / "fixtures" / "official_spade"


@pytest.fixture
def official_dir():
    """Folder of the official PyTorch fixtures; skips when ../shared is absent."""
    if not OFFICIAL.is_dir():
        pytest.skip(f"official SPADE fixtures not found at {OFFICIAL} (../shared is absent)")
    return OFFICIAL
