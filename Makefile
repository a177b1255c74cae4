# nnfc — set-up, tests and demo. Needs only python3.11, pip and gcc on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.installed
CORE_STAMP := $(VENV)/.installed-core
ANDROID_STAMP := $(VENV)/.installed-android
JOBS ?= 2

.PHONY: install install-core install-android test test-fast demo bench clean

install: $(STAMP)
install-core: $(CORE_STAMP)

# The compiler alone (what `make demo` needs): nnfc + onnx/onnxruntime + plots, no torch.
$(CORE_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e ".[plot]"
	@touch $@

# torch first, pinned: that takes the local CPU wheel; an unpinned resolve would pull CUDA builds.
# torch-pruning (`train` extra: Prune&Tune baseline, and the passes' real-architecture tests)
# --no-deps: it only asks for torch>=2.0 and numpy.
$(STAMP): $(CORE_STAMP)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q --no-deps torch-pruning==1.6.1
	$(PIP) install -q -e ".[train,test,plot]"
	$(PIP) install -q --no-deps timm==1.0.31 torchvision==0.28.0
	@touch $@
	@echo "nnfc installed in $(VENV)/ — activate with: source $(VENV)/bin/activate"

# android target: LiteRT + tensorflow-cpu from the `android` extra, then onnx2tf and tf-keras with
# --no-deps: onnx2tf pins numpy 1.26/onnx 1.19/onnxruntime 1.23/tensorflow 2.19 (pip check lists
# them) and tf-keras wants the full `tensorflow` wheel; both run on the versions the extra installs.
# tf2onnx (Keras -> ONNX for the passes' NHWC tests) pins protobuf 3.20; it runs on the newer one.
# nnfc runs the converter in a subprocess (nnfc/targets/onnx2tf_convert.py); NNFC_ONNX2TF_PYTHON
# may point it at an isolated interpreter instead.
install-android: $(ANDROID_STAMP)

$(ANDROID_STAMP): $(CORE_STAMP)
	$(PIP) install -q -e ".[android]"
	$(PIP) install -q --no-deps onnx2tf==1.29.24 tf-keras==2.21.0 tf2onnx==1.17.0
	@touch $@

test: install install-android
	$(BIN)/python -m pytest -n $(JOBS) -q

test-fast: install
	$(BIN)/python -m pytest -n $(JOBS) -q -m "not slow"

# one detection model per target (desktop, android, jetson) and out/demo/detections.png;
# compiling needs no torch, so the demo installs the compiler and the android runtime only
demo: $(CORE_STAMP) install-android
	$(BIN)/nnfc demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
