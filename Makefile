# The commands a developer, CI and the demo use. `make setup` is implied by every other target.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PACKAGES := shared devstack services/ingest services/sessionizer services/scorer services/notifier offline
REQUIREMENTS := requirements-dev.txt $(wildcard $(addsuffix /requirements.txt,$(PACKAGES))) \
	$(wildcard $(addsuffix /pyproject.toml,$(PACKAGES)))

.PHONY: setup test check lint typecheck deploy-check bench demo clean
.DEFAULT_GOAL := help

help:
	@echo "make demo   - run the whole pipeline locally (broker, Redis, Slack stand-in, 4 services)"
	@echo "make test   - run the test suite against a real broker and Redis"
	@echo "make check  - ruff, mypy and the tests"
	@echo "make bench  - benchmarks; figures in bench/results.json"
	@echo "make setup  - create $(VENV) with pinned dependencies (done by the targets above)"

setup: $(VENV)/.installed

$(VENV)/.installed: $(REQUIREMENTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned: its CPU wheel is the one this machine's pip finds; unpinned, a
	# dependency would pull the CUDA build (gigabytes) instead.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -r requirements-dev.txt
	$(PIP) install -q --no-deps $(foreach p,$(PACKAGES),$(if $(wildcard $(p)/pyproject.toml),-e $(p)))
	@touch $@

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check .

typecheck: setup
	$(VENV)/bin/mypy shared/beepgpt devstack/devstack offline/offline bench $(foreach p,ingest sessionizer scorer notifier,$(wildcard services/$(p)/$(p)))

deploy-check: setup
	bash deploy/validate.sh

check: lint typecheck deploy-check test

bench: setup
	$(PY) -m bench

demo: setup
	$(PY) -m devstack.demo

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
