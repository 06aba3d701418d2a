# The README's two commands: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-browser lint typecheck bench docs clean

# pyright from its wheel (bundled, on the system's Node); no check of PyPI for a newer release, so it runs offline.
PYRIGHT := PYRIGHT_PYTHON_IGNORE_WARNINGS=1 $(BIN)/pyright
# In `make test`: where Node is missing (the wheel would try to download it), the type check is skipped with the
# reason, as the tests that need Node skip; CI's machines have Node and run it. `make lint` always runs it.
PYRIGHT_IF_NODE := if command -v node >/dev/null 2>&1; then $(PYRIGHT); \
	else echo "pyright skipped: Node.js is not installed (install it to type-check; CI does)"; fi

# The project's own bytecode, written even where PYTHONDONTWRITEBYTECODE is set (as on CI's machines): otherwise
# every `parley` process compiles its 130 modules again, 0.3 s of CPU each time. Quick when nothing changed.
BYTECODE := $(BIN)/python -m compileall -q -j 0 parley app.py

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,checks]'  # a second step: see pyproject.toml
	$(BIN)/parley model install --quiet
	touch $(STAMP)

install: $(STAMP)

# The web chat on the embedded model, SQLite store; prints its URL. PORT=8001 make run picks another port.
PORT ?= 8000
run: $(STAMP)
	@$(BYTECODE)
	$(BIN)/parley ui --port $(PORT)

test: $(STAMP)
	$(BIN)/ruff check parley tests tools bench app.py
	@$(PYRIGHT_IF_NODE)
	@$(BYTECODE)
	$(BIN)/python -m pytest -q

# The browser suite alone (Debian's Chromium), on three workers: each takes a whole module, whose tests share its
# servers. Its folders are listed here so that workers collect only them (tests/conftest.py checks the list), in the
# order workers are handed their modules: the long cluster and replica modules first, so none ends the run alone.
BROWSER_TESTS := tests/reliability tests/ui tests/security
test-browser: $(STAMP)
	@$(BYTECODE)
	$(BIN)/python -m pytest -q -m browser -n 3 --dist loadfile $(BROWSER_TESTS)

lint: $(STAMP)
	$(BIN)/ruff check parley tests tools bench app.py
	$(BIN)/ruff format --check parley tests tools bench
	$(PYRIGHT)

# The type checker alone (config: [tool.pyright] in pyproject.toml).
typecheck: $(STAMP)
	$(PYRIGHT)

# The benchmarks (docs/performance.md), one after another; each prints its table and writes bench/results/.
# One of them: make bench B=context
B ?= context overhead parallel metering store embedded streaming webload
bench: $(STAMP)
	@for b in $(B); do echo "== bench.$$b"; $(BIN)/python -m bench.$$b || exit 1; done

# The documentation site (mkdocs.yml, docs/), strict: a broken link or a page left out of the nav fails it.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict -d site

clean:
	rm -rf $(VENV)
