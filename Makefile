# outage-correlator: `make run` starts the service, `make test` runs every check.
# Both install what they need into .venv on first use; nothing outside the project is assumed
# but a Python >= 3.11 (Debian's python3-venv is installed when venv is missing).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test unit integration lint bench replay-nyc clean system-deps

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python >= 3.11 is needed (found $$($(PYTHON) --version))"; exit 1; }
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || \
		{ apt-get update && apt-get install -y python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,iec104]'
	@rm -f $(VENV)/.installed-*
	@touch $@

S3RVER := deploy/s3rver/node_modules/.bin/s3rver

run: $(STAMP) $(S3RVER)
	$(VENV)/bin/outage run

test: lint system-deps $(S3RVER)
	$(PY) -m pytest

unit: $(STAMP)
	$(PY) -m pytest tests/unit

integration: $(STAMP) system-deps $(S3RVER)
	$(PY) -m pytest tests/integration

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

# Debian's ClickHouse server for the integration tests (they start it themselves), Debian's
# chromium for the browser tests (Playwright drives it) and mosquitto for the MQTT connector
# tests (started by the tests on loopback), prometheus-alertmanager for the storm benchmark's
# peer (and its smoke test); apt runs only when one is missing.
# Debian puts clickhouse-server in /usr/sbin, hence the second look there.
system-deps:
	@missing=; \
	{ command -v clickhouse-server >/dev/null 2>&1 || [ -x /usr/sbin/clickhouse-server ]; } || \
		missing="$$missing clickhouse-server clickhouse-client"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v prometheus-alertmanager >/dev/null 2>&1 || missing="$$missing prometheus-alertmanager"; \
	if [ -n "$$missing" ]; then \
		SUDO=; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
		$$SUDO apt-get update && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	fi; \
	echo "system deps: clickhouse-server, chromium, mosquitto and prometheus-alertmanager present"

# bench.storm_peer runs Debian's prometheus-alertmanager (system-deps) beside the service.
bench: $(STAMP) system-deps
	@mkdir -p var/bench
	$(PY) -m bench.correlator --json var/bench/correlator.json
	$(PY) -m bench.end_to_end --json var/bench/end_to_end.json
	$(PY) -m bench.lookup --json var/bench/lookup.json
	$(PY) -m bench.naive --json var/bench/naive.json
	$(PY) -m bench.projections --json var/bench/projections.json
	$(PY) -m bench.workers --json var/bench/workers.json
	$(PY) -m bench.storm_peer --json var/bench/storm_peer.json

# The local S3 server under the embedded broker's durable storage (npm package s3rver, pinned
# by deploy/s3rver/package-lock.json); Debian's nodejs and npm when the machine has none.
$(S3RVER): deploy/s3rver/package.json deploy/s3rver/package-lock.json
	@command -v npm >/dev/null 2>&1 || { \
		SUDO=; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
		$$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y nodejs npm; }
	npm ci --prefix deploy/s3rver --no-audit --no-fund --loglevel=error
	@touch $@

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis deploy/s3rver/node_modules
