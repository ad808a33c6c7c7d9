# Agora: `make run` brings the whole system up on embedded defaults; `make test` runs the suite.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")

.PHONY: help uv install run run-detach down status test chaos chaos-ci lint fmt typecheck check bench clean \
	images test-docker test-docker-ci compose-e2e k8s-check observability-check fuzz fuzz-ci attack attack-ci security-ci

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

uv: ## install uv when it is missing
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv

install: uv ## install every package of the workspace into .venv
	$(UV) sync --all-packages --locked

run: install ## start the whole stack in the foreground (Ctrl-C stops it)
	$(UV) run agora up

run-detach: install ## start the stack in the background
	$(UV) run agora up --detach

down: install ## stop every process the stack started
	$(UV) run agora down

status: install ## show what runs where
	$(UV) run agora status

# Coverage of the code the pytest process runs ([tool.coverage] in pyproject.toml); the run ends
# with one total line, and `uv run coverage report` shows each file afterwards.
test: install ## run the test suite against the embedded stack, then print the coverage total
	$(UV) run pytest --cov --cov-report= ; status=$$?; \
		echo "coverage: $$($(UV) run coverage report --format=total)% of lines (per file: uv run coverage report)"; \
		exit $$status

images: install ## build every container image with no registry (stand-ins + services; docs/compose.md)
	deploy/docker/images.sh all

# The integration tests on containers (AGORA_TEST_INFRA=docker); AGORA_OFFLINE_IMAGES=1 picks the
# stand-ins. Containers are removed by label afterwards, whatever the outcome.
DOCKER_TEST_ENV := AGORA_TEST_INFRA=docker TESTCONTAINERS_RYUK_DISABLED=true \
	TESTCONTAINERS_CONNECTION_MODE=docker_host
DOCKER_CI_TESTS := shared/kit/tests services/items/tests

test-docker: install ## run every package's integration tests on containers (needs a Docker engine)
	@deploy/docker/engine.sh status >/dev/null 2>&1 || { echo "no Docker engine answers: run 'sudo deploy/docker/engine.sh start' (installs docker.io when missing)"; exit 1; }
	@if [ "$${AGORA_OFFLINE_IMAGES:-}" = 1 ]; then deploy/docker/images.sh backing; fi
	$(DOCKER_TEST_ENV) $(UV) run pytest --ignore=tests/e2e $(PYTEST_ARGS); \
		status=$$?; deploy/docker/clean.sh tests; exit $$status

test-docker-ci: install ## CI's subset on containers: the kit's and the items service's integration tests
	@deploy/docker/engine.sh status >/dev/null 2>&1 || { echo "no Docker engine answers: run 'sudo deploy/docker/engine.sh start'"; exit 1; }
	@if [ "$${AGORA_OFFLINE_IMAGES:-}" = 1 ]; then deploy/docker/images.sh backing; fi
	$(DOCKER_TEST_ENV) $(UV) run pytest $(DOCKER_CI_TESTS) $(PYTEST_ARGS); \
		status=$$?; deploy/docker/clean.sh tests; exit $$status

compose-e2e: install ## build the images, start docker-compose.yml, run tests/e2e through its gateway, tear down
	deploy/docker/compose-e2e.sh $(PYTEST_ARGS)

chaos: install ## fault injection with reconciliation, every scenario (~15 min); updates docs/reliability.md
	$(UV) run python -m agora_deploy.chaos --write-docs

chaos-ci: install ## the chaos suite's CI subset (at most 3 minutes)
	$(UV) run python -m agora_deploy.chaos --ci

# CI's budget is 3 minutes for fuzz-ci and attack-ci together: 10 examples per operation and
# phase keep every phase and check (the coverage phase, most of the cases, does not depend on it).
fuzz-ci: install ## schemathesis on every service's OpenAPI, user and admin token, bounded (CI)
	AGORA_FUZZ_EXAMPLES=$${AGORA_FUZZ_EXAMPLES:-10} $(UV) run pytest tests/fuzz -m fuzz -q $(PYTEST_ARGS)

fuzz: install ## the same, long (1000 examples per operation and phase; AGORA_FUZZ_EXAMPLES to change)
	AGORA_FUZZ_EXAMPLES=$${AGORA_FUZZ_EXAMPLES:-1000} $(UV) run pytest tests/fuzz -m fuzz -q \
		-o timeout=7200 $(PYTEST_ARGS)

attack-ci: install ## the attack suite through the gateway, each JWT attack on one endpoint per service
	$(UV) run pytest tests/attack -m attack -q $(PYTEST_ARGS)

# CI runs both CI parts in one session: one system stack instead of two.
security-ci: install ## fuzz-ci and attack-ci in one pytest session (what .ci/run runs)
	AGORA_FUZZ_EXAMPLES=$${AGORA_FUZZ_EXAMPLES:-10} $(UV) run pytest tests/attack tests/fuzz \
		-m "fuzz or attack" -q $(PYTEST_ARGS)

attack: install ## the attack suite, every JWT attack on all seven protected endpoints
	AGORA_ATTACK_FULL=1 $(UV) run pytest tests/attack -m attack -q $(PYTEST_ARGS)

bench: install ## Agora against a bare FastAPI app, same run (wrk; ~4 min): writes docs/performance.md
	@command -v wrk >/dev/null 2>&1 || { echo "installing wrk (Debian package)"; \
		timeout 300 bash -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install \
		-y -qq --no-install-recommends wrk' </dev/null >/dev/null 2>&1 \
		|| { echo "wrk is needed: apt-get install -y wrk"; exit 1; }; }
	$(UV) run python bench/run.py $(BENCH_ARGS)

K8S_VERSION ?= 1.37.0
k8s-check: install ## render deploy/k8s (base and every overlay) and validate it offline against the Kubernetes schemas
	@set -euo pipefail; out=$$(mktemp -d); trap 'rm -rf "$$out"' EXIT; \
	for dir in deploy/k8s/base deploy/k8s/overlays/*/; do \
		dir=$${dir%/}; file="$$out/$$(echo "$$dir" | tr / _).yaml"; \
		$(UV) run kubectl kustomize "$$dir" > "$$file"; \
		$(UV) run kubernetes-validate --strict --quiet -k $(K8S_VERSION) "$$file"; \
		echo "$$dir: $$(grep -c '^kind:' "$$file") objects valid against Kubernetes $(K8S_VERSION)"; \
	done

observability-check: ## promtool check + unit tests of the alert rules, the Prometheus config, the dashboard JSON
	deploy/observability/check.sh

lint: install ## ruff lint and format check
	$(UV) run ruff check .
	$(UV) run ruff format --check .

fmt: install ## format and autofix
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

typecheck: install ## mypy --strict
	$(UV) run mypy

check: lint typecheck test ## everything CI runs

clean: ## remove local state (stops the stack first)
	-$(UV) run agora down
	rm -rf .agora .mypy_cache .pytest_cache .ruff_cache
