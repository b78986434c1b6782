"""Where the project's shipped files live (a source checkout or an editable install)."""
from __future__ import annotations

import os
from pathlib import Path

from edgeincep.core.errors import DataError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CALIBRATION_DIR = PROJECT_ROOT / "calibration"
DEFAULT_CALIBRATION = CALIBRATION_DIR / "default"
RECIPES_DIR = PROJECT_ROOT / "recipes"


def data_dir() -> Path:
    """Where `make data` writes its folders (the escalation ladder's default probe and training splits are
    looked for there); EDGEINCEP_DATA_DIR moves it."""
    return Path(os.environ.get("EDGEINCEP_DATA_DIR") or PROJECT_ROOT / "data")
REFERENCE_MODELS_DIR = PROJECT_ROOT / "reference_models"


def default_calibration() -> Path:
    if not DEFAULT_CALIBRATION.is_dir():
        raise DataError("the default calibration set is missing (it ships in a source checkout); "
                        "pass --calib DIR with your own images", DEFAULT_CALIBRATION)
    return DEFAULT_CALIBRATION
