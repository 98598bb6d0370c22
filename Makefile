# Every target creates .venv (and installs the project with its dev extra) when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DAGSTER_HOME_DIR ?= $(CURDIR)/.dagster_home
UI_PORT ?= 3000
TEST_WORKERS ?= auto

.PHONY: demo test ui bench lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml setup.cfg
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

$(DAGSTER_HOME_DIR)/dagster.yaml: deploy/dagster.yaml
	@mkdir -p $(DAGSTER_HOME_DIR)
	cp deploy/dagster.yaml $@

demo: $(STAMP) $(DAGSTER_HOME_DIR)/dagster.yaml
	DAGSTER_HOME=$(DAGSTER_HOME_DIR) $(BIN)/python -m aggassets.demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

ui: $(STAMP) $(DAGSTER_HOME_DIR)/dagster.yaml
	DAGSTER_HOME=$(DAGSTER_HOME_DIR) $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p $(UI_PORT)

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) data .dagster_home
