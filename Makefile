# The two commands: `make demo` (the live system + offline on the bundled clip) and
# `make test` (the whole suite). Both build the pinned .venv first (idempotent).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: env demo test bench
env:
	bash scripts/setup_env.sh

demo: env
	source scripts/ros_env.sh && $(PY) -m vp3d_ros.demo $(ARGS)

test: env
	source scripts/ros_env.sh && $(PY) -m pytest -q test $(ARGS)

bench: env
	source scripts/ros_env.sh && $(PY) benchmarks/run_all.py
