import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Tests never download (nothing in them needs the internet) and never read or fill the user's weight
# cache: weights come from ../shared (skipped without it) or from files the tests write or serve.
os.environ["SPADE_OFFLINE"] = "1"
os.environ["SPADE_WEIGHTS_CACHE"] = tempfile.mkdtemp(prefix="spade_test_weights_")
atexit.register(shutil.rmtree, os.environ["SPADE_WEIGHTS_CACHE"], ignore_errors=True)
for _var in ("SPADE_ALEXNET_WEIGHTS", "SPADE_VGG19_WEIGHTS", "SPADE_INCEPTION_WEIGHTS",
             "SPADE_WEIGHTS_URL_BASE"):
    os.environ.pop(_var, None)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPADE_SHARED", REPO.parent / "shared"))
OFFICIAL = SHARED / "fixtures" / "official_spade"
WEIGHTS_DIR = SHARED / "weights"


@pytest.fixture
def official_dir():
    """Folder of the official PyTorch fixtures; skips when ../shared is absent."""
    if not OFFICIAL.is_dir():
        pytest.skip(f"official SPADE fixtures not found at {OFFICIAL} (../shared is absent)")
    return OFFICIAL


def needs_shared(path: Path):
    """Skip marker: the test reads `path` from the shared fixtures folder (absent in a user's clone)."""
    return pytest.mark.skipif(not Path(path).exists(),
                              reason=f"needs {path} (the shared fixtures folder {SHARED} is absent)")
