# The two commands of the README: `make book` and `make test`. Both bootstrap .venv when missing.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FASHION := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
BOOK_FLAGS := -W -n --keep-going

.PHONY: setup data book test unit notebooks book-small clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# Fashion-MNIST from Debian's package (no download at build or test time).
data:
	@if [ ! -f $(FASHION) ] && [ -z "$$DG_FASHION_MNIST_DIR" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq dataset-fashion-mnist; fi; \
	fi

# The book, default profile (GPU profile when CUDA is present), HTML in _build/html.
book: $(STAMP) data
	$(BIN)/jupyter-book build . $(BOOK_FLAGS)

# Everything CI checks: the book build in the small profile, then the unit tests and every chapter
# under nbval (lax). pytest runs last so that its summary closes the log.
test: $(STAMP) data
	DG_PROFILE=small $(BIN)/jupyter-book build . --path-output _build/test $(BOOK_FLAGS)
	DG_PROFILE=small $(BIN)/python -m pytest

unit: $(STAMP)
	$(BIN)/python -m pytest tests

clean:
	rm -rf _build
