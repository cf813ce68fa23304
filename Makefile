# aipic: `make run` installs and starts the app; `make test` installs and runs the tests (what .ci/run does).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast lint browser bench clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python app.py $(ARGS)

# The browser test drives Debian's Chromium (Playwright's own browser download is not used); the metadata test
# reads the IPTC fields back with Debian's exiftool (a real XMP reader).
browser:
	@command -v chromium >/dev/null 2>&1 && command -v exiftool >/dev/null 2>&1 || { \
		echo "installing Debian chromium and exiftool for the browser and metadata tests"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium libimage-exiftool-perl >/dev/null; }

# ruff and mypy (configured in pyproject.toml) must be clean before the tests run.
lint: install
	$(BIN)/ruff check aipic app.py bench tests
	$(BIN)/mypy

test: install browser lint
	HF_HUB_OFFLINE=1 AIPIC_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -q $(ARGS)

# The fast tier for a developer's loop: no app server, browser, subprocess, PostgreSQL or Ray (pytest -m "not slow").
test-fast: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow" $(ARGS)

bench: install
	$(BIN)/python bench/bench_pipeline.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
