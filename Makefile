# Two commands set Parley up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 7860
# Debian packages the test suite drives: a browser, a Redis server, ffmpeg.
SYSTEM_PACKAGES := chromium redis-server ffmpeg
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# pip builds llama-cpp-python from source. A native build (-march=native) turns on
# ggml's AMX kernels where the CPU reports AMX, and on such a VM llama-cpp-python
# 0.3.36 crashed with SIGSEGV in ggml_backend_amx_mul_mat on every multi-token
# prompt. This portable AVX2 build avoids those kernels.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON

.PHONY: run install install-test system-packages test typecheck bench clean

$(BIN)/python:
	@$(PYTHON) -m venv $(VENV) || { echo "could not create $(VENV); on Debian or Ubuntu install python3-venv (apt-get install python3-venv) and run make again" >&2; exit 1; }
	$(BIN)/pip install --upgrade pip wheel

# Stamp files: install again only when pyproject.toml changes, so that
# `make run` starts without reaching the package registry after the first time.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/python app.py --host $(HOST) --port $(PORT) $(if $(CONFIG),--config $(CONFIG))

install-test: $(VENV)/.installed-test

system-packages:
	@missing=""; \
	for pkg in $(SYSTEM_PACKAGES); do dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

typecheck: install-test
	$(BIN)/mypy

test: install-test system-packages typecheck
	$(BIN)/python -m pytest -ra $(PYTEST_ARGS)

bench: install-test
	$(BIN)/pip install -e '.[bench]'
	@# sched_trace.py is a diagnostic that needs root and perf, not a benchmark with a peer.
	@for script in bench/*.py; do \
		[ "$$script" = bench/sched_trace.py ] && continue; \
		echo "== $$script"; $(BIN)/python $$script || exit 1; \
	done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache
