# The two commands of the README: `make demo` and `make test` (and `make test-all`).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-all lint

$(BIN)/activate: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $(BIN)/activate

# The webcam when one is present, otherwise the bundled sample photo.
demo: $(BIN)/activate
	$(BIN)/python video_tester.py

# The quick tier (a few minutes on 2 cores); test-all adds the slow tests (CI runs it).
test: $(BIN)/activate
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow"

test-all: $(BIN)/activate
	$(BIN)/ruff check .
	$(BIN)/python -m pytest
