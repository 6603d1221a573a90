# The two commands: `make demo` and `make test`. Both install what is missing first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := mosquitto mosquitto-clients ffmpeg espeak-ng fonts-dejavu-core \
	poppler-utils tesseract-ocr tesseract-ocr-vie chromium lame mpv
STAMP := $(VENV)/.installed

.PHONY: demo test lint install system-deps clean

demo: install
	$(VENV)/bin/loaxa demo $(DEMO_ARGS)

test: install
	$(VENV)/bin/ruff check headend tests hw-sim
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/python -m pytest --durations=20 $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check headend tests hw-sim
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

install: system-deps $(STAMP)

# apt packages, only when one is missing (needs root or sudo).
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing system packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@# Debian starts a system-wide broker on port 1883; LoaXa runs its own, so stop that one.
	@if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto 2>/dev/null; then \
	  SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; $$SUDO systemctl disable --now mosquitto >/dev/null 2>&1 || true; fi

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	@# MicroPython's type stubs live apart so they cannot shadow CPython modules for the headend.
	$(PY) -m pip install -q --no-deps --target $(VENV)/mpstubs micropython-esp32-stubs==1.29.0.post1 micropython-stdlib-stubs==1.29.0.post2
	touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
