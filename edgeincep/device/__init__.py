"""What runs on the device: standalone programs shipped verbatim in bundles (and imported by the host,
so both sides compute the same thing by construction), and the pins their requirements.txt is written from."""
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMMON_SOURCE = HERE / "common.py"      # images, preprocessing, --check: in every bundle
COMMON_NAME = "edgeincep_common.py"     # what run.py imports beside itself in every bundle
RUNNER_SOURCE = HERE / "runner.py"      # run.py of the LiteRT, Edge TPU and OpenVINO bundles
JETSON_RUNNER_SOURCE = HERE / "jetson_run.py"  # run.py of the Jetson bundle
