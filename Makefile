# modelserver: `make run` serves the stack on http://127.0.0.1:$(PORT).
# `make check` is the way to iterate: lint, format and the unit tests (tests/unit, in-process, no
# server), in seconds. `make test` runs lint, format and every layer: unit, stack (real nginx and
# uWSGI) and system (systemd, network namespaces, the browser, `make run`); `make test-deep` what
# it leaves to CI. One file or test: `make test PYTEST_ARGS="tests/stack/test_stack.py -k 502"`.

PORT ?= 5555
# Clients `make run` exempts from the per-client limits (200 requests/s, 32 at once), e.g.
# EXEMPT=127.0.0.1 to load it with wrk from this machine; none by default, as installed.
EXEMPT ?=
# The virtualenv is built on the system's Python (Debian's /usr/bin/python3), the interpreter
# production uses: uWSGI is compiled against, and embeds, the Python of the venv it is built in.
PYTHON ?= /usr/bin/python3
VENV := .venv
# Swagger UI's files, for /docs: fetched from a pinned package (deploy/docs-viewer.sh).
VIEWER := static/swagger-ui/.package
# What a clean Debian machine lacks: nginx, the venv module, and a compiler with Python's headers
# to build uWSGI (PyPI ships it as source); the tests also drive load with wrk and the page
# with Debian's chromium, and check the alert rules and dashboard with Debian's prometheus.
SYSTEM_PACKAGES := nginx python3-venv python3-dev gcc
TEST_PACKAGES := $(SYSTEM_PACKAGES) wrk chromium prometheus
# The scale-out tests: network namespaces (ip), curl and openssl as clients, a test certificate.
TEST_PACKAGES += iproute2 curl openssl nftables
# The container tests: podman with the runc runtime, mmdebstrap to make base images from Debian.
TEST_PACKAGES += podman runc mmdebstrap
# `make image`: BASE is the image's base (default debian:bookworm-slim, from a registry), or
# local: made here from Debian packages (mmdebstrap, as root); IMAGE_ARGS go to the build as
# they are (docs/container.md).
BASE ?=
IMAGE_ARGS ?=
# The bench counts syscalls per request with strace (its smoke test runs in make test).
TEST_PACKAGES += strace

.PHONY: run check test test-deep image model soak bench bench-quick lint system-packages test-packages bench-packages clean

run: system-packages $(VENV)/.service $(VIEWER)
	$(VENV)/bin/python deploy/localstack.py --port $(PORT) $(addprefix --exempt ,$(EXEMPT))

# The unit layer needs neither nginx nor a browser: only the venv (and what building it takes).
check: system-packages lint
	$(VENV)/bin/python -m pytest -q tests/unit

test: test-packages lint $(VIEWER) $(VENV)/manifest-tools/.installed
	$(VENV)/bin/python -m pytest -m "not deep" $(PYTEST_ARGS)

# What make test leaves to CI, minutes more for faults that show rarely: the tests marked deep
# (the demos' removal guide, App Engine's entrypoint in a fresh venv) and the fuzzing with four
# times make test's cases.
test-deep: test-packages lint $(VIEWER)
	$(VENV)/bin/python -m pytest -m deep
	MODELSERVER_FUZZ_SCALE=4 $(VENV)/bin/python -m pytest tests/stack/test_fuzz.py

# The OCI image (Dockerfile), with podman or docker, whichever is installed: tagged
# modelserver:latest and modelserver:<short commit> (-dirty when the checkout differs from it).
image:
	BASE=$(BASE) deploy/container/build.sh $(IMAGE_ARGS)

# Train the digit classifier again from scikit-learn's bundled digits (fixed seed, same file).
model: $(VENV)/.tests
	$(VENV)/bin/python models/train_digits.py

# The load test for 10 minutes instead of 15 s: 0 errors and no worker growth over a long run.
soak: test-packages $(VENV)/.tests
	MODELSERVER_LOAD_SECONDS=600 $(VENV)/bin/python -m pytest -k 64_clients tests/stack/test_reliability.py

# The side-by-side benchmark (bench/README.md): about 25 min; bench-quick in about 5.
# Both write bench/results.md, .json and .png and print the table.
bench: bench-packages $(VENV)/.bench
	$(VENV)/bin/python bench/run.py

bench-quick: bench-packages $(VENV)/.bench
	$(VENV)/bin/python bench/run.py --quick

lint: $(VENV)/.tests
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

system-packages:
	@deploy/ensure-packages.sh $(SYSTEM_PACKAGES)

test-packages:
	@deploy/ensure-packages.sh $(TEST_PACKAGES)

bench-packages:
	@deploy/ensure-packages.sh $(SYSTEM_PACKAGES) wrk strace

# Stamp files: pip runs again only when a requirements file changes. uWSGI first, built here
# from its source against this venv's interpreter, with Python linked in
# (deploy/install-uwsgi.sh); the rest of requirements.txt then finds it installed.
$(VENV)/.service: requirements.txt deploy/install-uwsgi.sh
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	deploy/install-uwsgi.sh $(VENV) requirements.txt
	$(VENV)/bin/pip install --quiet --no-cache-dir -r requirements.txt
	touch $@

$(VENV)/.tests: $(VENV)/.service tests/requirements.txt
	$(VENV)/bin/pip install --quiet -r tests/requirements.txt
	touch $@

# checkov and kubernetes-validate, for the Kubernetes manifests' tests, in a venv of their own:
# checkov's pins (packaging<24, networkx<2.7, ...) contradict the test tools'.
$(VENV)/manifest-tools/.installed: tests/requirements-manifests.txt
	test -x $(VENV)/manifest-tools/bin/python || $(PYTHON) -m venv $(VENV)/manifest-tools
	$(VENV)/manifest-tools/bin/pip install --quiet -r tests/requirements-manifests.txt
	touch $@

# The peers (gunicorn, FastAPI, uvicorn) and matplotlib, pinned in their own file.
$(VENV)/.bench: $(VENV)/.service bench/requirements.txt
	$(VENV)/bin/pip install --quiet -r bench/requirements.txt
	touch $@

$(VIEWER): deploy/docs-viewer.sh $(VENV)/.service
	deploy/docs-viewer.sh $(VENV)/bin/pip $(@D)

clean:
	rm -rf $(VENV) $(dir $(VIEWER)) .pytest_cache .ruff_cache .hypothesis
