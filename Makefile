# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint

$(BIN)/activate: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $(BIN)/activate

# The webcam when one is present, otherwise the bundled sample photo.
demo: $(BIN)/activate
	$(BIN)/python video_tester.py

test: $(BIN)/activate
	$(BIN)/ruff check .
	$(BIN)/python -m pytest
