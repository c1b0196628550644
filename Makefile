# Two entry points for a fresh machine (Python 3.11, Java 17 and Maven present):
#   make run   - install, start a local Kafka, run kafkaops on examples/kafkaops.toml
#   make test  - install, lint, and run every test against real Kafka brokers

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/kafkaops dev up --name local --port 19092
	$(BIN)/kafkaops run --config examples/kafkaops.toml & daemon=$$!; \
	trap 'kill $$daemon 2>/dev/null' INT TERM; \
	alert="$(BIN)/kafkaops alert --config examples/kafkaops.toml --wait 60"; \
	$$alert define lag_alert -tick examples/lag_alert.tick && \
	$$alert define-topic-handler examples/lag_alert_handler.yaml && \
	$$alert enable lag_alert && echo "example alert task lag_alert is enabled"; \
	wait $$daemon

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

test: lint
	command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server)
	$(BIN)/python -c 'from kafkaops.testing import kafka_libs; kafka_libs()'
	$(BIN)/pytest

clean:
	-$(BIN)/kafkaops dev down
	rm -rf $(VENV) .pytest_cache .ruff_cache .kafkaops
