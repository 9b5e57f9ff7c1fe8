# The two commands of the README: `make book` and `make test`. Both bootstrap .venv when missing.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FASHION := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
CHROMIUM := /usr/bin/chromium
BOOK_FLAGS := -W -n --keep-going

.PHONY: setup data browser book lab student grade course-site test unit nbval reproducible dist lock clean

setup: $(STAMP)

# The venv is installed from the lock (every package pinned, with hashes); pip itself is in the lock.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# Fashion-MNIST from Debian's package (no download at build or test time).
data:
	@if [ ! -f $(FASHION) ] && [ -z "$$DG_FASHION_MNIST_DIR" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq dataset-fashion-mnist; fi; \
	fi

# Debian's Chromium, for the live-widget test (tests/test_browser.py drives it through Playwright; no
# browser is downloaded at test time).
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium; fi; \
	fi

# Reading interactively: JupyterLab on the chapters (default profile; live widgets).
lab: $(STAMP) data
	$(BIN)/jupyter lab book/

# The book, default profile (GPU profile when CUDA is present), HTML in _build/html.
book: $(STAMP) data student
	$(BIN)/jupyter-book build . $(BOOK_FLAGS)

# Everything CI checks: two book builds in the small profile (each executes every chapter, and any
# failing cell or assert fails it), compared value by value, then the unit tests (with the live-widget
# test in Chromium, whose screenshots stay in _build/browser). pytest runs last so
# that its summary closes the log. (`make nbval` runs the chapters once more, cell by cell, under pytest.)
test: $(STAMP) data browser student
	DG_PROFILE=small $(BIN)/jupyter-book build . --path-output _build/test $(BOOK_FLAGS)
	DG_PROFILE=small $(BIN)/jupyter-book build . --path-output _build/test-again $(BOOK_FLAGS)
	$(BIN)/python tests/compare_builds.py _build/test _build/test-again
	DG_PROFILE=small $(BIN)/python -m pytest tests

# Every chapter under nbval (lax): each cell runs, each assert must hold; reported cell by cell.
nbval: $(STAMP) data
	DG_PROFILE=small $(BIN)/python -m pytest book

# Two small-profile builds of this commit give the same numbers (make test does it too).
reproducible: $(STAMP) data
	DG_PROFILE=small $(BIN)/jupyter-book build . --path-output _build/repro-a $(BOOK_FLAGS)
	DG_PROFILE=small $(BIN)/jupyter-book build . --path-output _build/repro-b $(BOOK_FLAGS)
	$(BIN)/python tests/compare_builds.py _build/repro-a _build/repro-b

# The course kit (README, "Teaching with the book"; book/instructor_guide.md). Student notebooks of every
# chapter (solutions replaced by stubs, through nbgrader) in _build/course/student, the course folder
# (autograder version, gradebook) in _build/course/nbgrader.
student: $(STAMP)
	$(BIN)/python course/kit.py student --out _build/course

# Grade a folder of submissions, SUBMISSIONS/<student>/<chapter>.ipynb: each notebook executed by nbgrader
# in a fresh kernel with time limits; scores in _build/course/grades.csv and grades.html.
grade: $(STAMP)
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=folder-of-<student>/<chapter>.ipynb"; exit 2; }
	$(MAKE) student
	$(BIN)/python course/kit.py grade "$(SUBMISSIONS)" --course _build/course

# The book without the exercises' solutions, for a course website: HTML in _build/course-site/_build/html.
course-site: $(STAMP) data student
	$(BIN)/python course/kit.py site --out _build/course
	$(BIN)/jupyter-book build _build/course/site --path-output _build/course-site $(BOOK_FLAGS)

# What a student installs: the package as a wheel and an sdist (with the shipped weights and data), built
# offline from the venv's setuptools, and dist/course-kit.zip with the wheel and the student notebooks.
dist: student
	rm -rf dist
	$(BIN)/uv build --offline --no-build-isolation --python $(BIN)/python -o dist
	cd _build/course && $(CURDIR)/$(BIN)/python -m zipfile -c $(CURDIR)/dist/course-kit.zip student $(CURDIR)/dist/diffusion_geometry-*.whl

unit: $(STAMP) browser
	$(BIN)/python -m pytest tests

# Regenerate requirements.lock from the direct pins of requirements.txt (README: "Updating the locked
# environment"). For CPython 3.11 on x86-64 Linux; torch is the CPU build, found in $(TORCH_WHEELS) on
# this project's machines (or, elsewhere, at PyTorch's CPU index: pass it with UV_EXTRA_INDEX_URL).
TORCH_WHEELS ?= /opt/wheels
lock: $(STAMP)
	$(BIN)/uv pip compile requirements.txt --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  --generate-hashes --find-links $(TORCH_WHEELS) --custom-compile-command "make lock" -o requirements.lock

clean:
	rm -rf _build
