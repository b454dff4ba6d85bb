# The two first commands: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test cluster-test lint format bench soak schema clean services

$(STAMP): pyproject.toml requirements.txt dev-constraints.txt
	test -x $(BIN)/python || bash scripts/venv.sh $(PYTHON) $(VENV)
	$(BIN)/pip install -q -c dev-constraints.txt --upgrade pip
	$(BIN)/pip install -q -c requirements.txt -c dev-constraints.txt -e '.[dev]'
	touch $(STAMP)

services:
	bash scripts/services.sh --postgres

demo: $(STAMP)
	bash scripts/services.sh
	$(BIN)/python -m sandbox.demo

test: $(STAMP)
	bash scripts/services.sh --postgres
	$(BIN)/pytest -q

# Also part of `make test`: a private three-node RabbitMQ cluster (its own ports and data,
# the shared node untouched), a node killed and PostgreSQL restarted under a running worker.
cluster-test: $(STAMP)
	bash scripts/services.sh --postgres
	$(BIN)/pytest -q -m cluster tests/cluster

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

schema: $(STAMP)
	$(BIN)/python -m contracts schema

bench: $(STAMP)
	bash scripts/services.sh --postgres
	$(BIN)/python -m bench.throughput

soak: $(STAMP)
	bash scripts/services.sh
	$(BIN)/python -m bench.soak

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
