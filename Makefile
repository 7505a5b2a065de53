# promolab: `make demo` runs the pipeline on simulated data; `make test` runs lint, types and tests.
# Both create .venv with a Python >= 3.12 found by scripts/find-python and install what they need;
# `make test` also needs headless Chromium for the report rendering test (scripts/find-chromium
# installs Debian's package when run as root).
.PHONY: demo test docs bench clean

VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.promolab-installed
DEMO_OUT ?= build/demo
DEMO_UNITS ?= 200000

$(STAMP): pyproject.toml
	@python=$$(sh scripts/find-python) || exit 1; \
	if [ ! -x $(BIN)/python ] || ! $(BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then \
		echo "creating $(VENV) with $$python"; rm -rf $(VENV); "$$python" -m venv $(VENV) || exit 1; \
	fi
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,spark]'
	@$(BIN)/python -m compileall -q src >/dev/null  # bytecode now: PYTHONDONTWRITEBYTECODE may be set
	@touch $@

demo: $(STAMP)
	@sh scripts/demo.sh "$(BIN)" "$(DEMO_OUT)" "$(DEMO_UNITS)"

test: $(STAMP) docs
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy
	@CHROMIUM=$$(sh scripts/find-chromium --install) || exit 1; \
	echo "CHROMIUM=$$CHROMIUM $(BIN)/python -m pytest -n 2 --dist loadfile"; \
	CHROMIUM=$$CHROMIUM $(BIN)/python -m pytest -n 2 --dist loadfile

docs: $(STAMP)
	$(BIN)/mkdocs build --strict --quiet

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
