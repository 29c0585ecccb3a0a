# Quick start: `make run` (the whole pipeline offline, `hrstream demo`) and `make test` (ruff + the tests).
# `make run-real` runs `hrstream run` on a real bundled clip with the published weights (downloaded once).
# Each creates or reuses the virtual environment in .venv; nothing else has to be installed first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hrstream-installed
OUT ?= runs/quickstart
CLIP ?= tests/data/videos/two_people_1080p30.mp4

.PHONY: venv run run-real test lint bench mutate clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/hrstream demo --out $(OUT)

run-real: $(STAMP)
	$(VENV)/bin/hrstream run $(CLIP) --task pose --out $(OUT)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(VENV)/bin/pytest -q -ra --durations=25

bench: $(STAMP)
	$(PY) benchmarks/pipeline_benchmark.py

# Mutation testing of the core modules (docs/testing.md): mutmut (the `mutate` extra, configured in
# pyproject.toml) in a copy of the tree (mutants/), one module at a time at low priority; `MUTATE=...`
# picks modules (mutant name globs), `mutmut results` / `mutmut show NAME` tell what survived.
MUTATE ?= hrstream.pose.decode.* hrstream.pose.crops.* hrstream.track.tracker.* hrstream.track.smoothers.* \
	hrstream.track.point_filters.* hrstream.exports.* hrstream.models.checkpoints.* hrstream.runs.local.*
mutate: $(STAMP)
	$(PY) -m pip install -q -e '.[mutate]'
	for m in $(MUTATE); do nice -n 10 $(VENV)/bin/mutmut run --max-children 1 "$$m" || exit 1; done
	$(VENV)/bin/mutmut results

clean:
	rm -rf $(VENV) runs mutants .pytest_cache .ruff_cache
