# One command each on a fresh machine: the venv is created and filled on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
MODEL  ?= inception_resnet_v2
TARGET ?= all
OUT    ?= out
PYTEST_ARGS ?=

.PHONY: install system-packages test-prerequisites lint test test-slow export data bench escalation reference-models clean

# Every backend that runs on this CPU, then the tools whose metadata pins conflict (requirements-nodeps.txt).
# pip check must pass for everything else; only those tools' declared-but-unneeded pins are excused.
$(VENV)/.installed: pyproject.toml constraints.txt requirements-nodeps.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,openvino,tflite,modelopt,executorch,ray,explorer]"
	$(PY) -m pip install -q --no-deps -c constraints.txt -r requirements-nodeps.txt
	$(PY) -m pip check | { grep -vE '^(onnx2tf|nvidia-modelopt) |^No broken' || true; } | { ! grep .; }
	touch $@

install: system-packages $(VENV)/.installed

## Debian packages (ci/system-packages.sh lists them): silent when present, else apt-get as root or `sudo -n`.
system-packages:
	@bash ci/system-packages.sh

## What the test suite runs for real besides Python: an sshd, qemu-user and an emulated arm64 Pi userland.
test-prerequisites: install
	@bash ci/system-packages.sh --tests
	@bash ci/arm64-sysroot.sh

## Style, and the layer rules of docs/architecture.md (import-linter contracts in pyproject.toml).
lint: install
	$(BIN)/ruff check edgeincep tests benchmarks
	$(BIN)/lint-imports --no-cache

## The default test run (CI): lint, then everything but the slow end-to-end tests.
test: install test-prerequisites lint
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

## Slow end-to-end tests: full-size models, the full 10k validation set.
test-slow: install test-prerequisites
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

## Fashion-MNIST as image folders (from Debian's dataset-fashion-mnist, which `install` provides).
data: install
	test -d data/fashion-mnist/train || $(BIN)/edgeincep data fashion-mnist --out data/fashion-mnist

## The default job: the whole pipeline on a reference model (MODEL=..., TARGET=...).
export: install data
	$(BIN)/edgeincep run --model $(MODEL) --target $(TARGET) --val data/fashion-mnist/val --out $(OUT)/$(MODEL)

## The benchmark suite: full-size Inception-v4 / Inception-ResNet-v2 at 299 px, every CPU runtime, FP32 vs INT8,
## each pipeline stage's wall time and peak memory, each runtime's own INT8 defaults beside ours, and the same on the
## three reference models (10k images, for agreement). Writes $(OUT)/bench/suite.json (about two hours on 2 cores).
bench: install data
	$(PY) benchmarks/suite.py --out $(OUT)/bench

## The hard case: a strict budget (benchmarks/strict.yaml, 1 prediction in 500) on the three reference models and
## every target here, each run climbing the escalation ladder. Writes $(OUT)/escalation/escalation.{json,md}.
escalation: install data
	$(PY) benchmarks/escalation.py --out $(OUT)/escalation

## Retrain the three reference models (15-30 min each on 2 idle cores; see each model card).
# Plain Inception-v4 (no residuals) converges slower and, at 75 px, plateaus near 90% (its Inception-C
# blocks see a 1x1 grid): it trains at 107 px (2x2 there), 10 epochs at lr 0.1 instead of 6 at 0.2.
REF_TRAIN = $(BIN)/edgeincep train --width 0.125 --seed 0 --threads 2
reference-models: install
	$(REF_TRAIN) --model inception_resnet_v2 --input-size 75 --epochs 6 --lr 0.2 \
	  --out reference_models/inception_resnet_v2.fmnist.w0125.safetensors --card reference_models/inception_resnet_v2.fmnist.w0125.md
	$(REF_TRAIN) --model inception_resnet_v1 --input-size 75 --epochs 6 --lr 0.2 \
	  --out reference_models/inception_resnet_v1.fmnist.w0125.safetensors --card reference_models/inception_resnet_v1.fmnist.w0125.md
	$(REF_TRAIN) --model inception_v4 --input-size 107 --epochs 10 --lr 0.1 \
	  --out reference_models/inception_v4.fmnist.w0125.safetensors --card reference_models/inception_v4.fmnist.w0125.md

clean:
	rm -rf $(OUT) .pytest_cache
