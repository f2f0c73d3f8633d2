# The two commands: `make demo` (the live system + offline on the bundled clip) and
# `make test` (the whole suite). Both build the pinned .venv first (idempotent).
# Next steps without activating .venv: `make process VIDEO=clip.mp4` (video -> bag -> CSV/TRC),
# or its halves `make offline VIDEO=clip.mp4 [OUT=bag]` and `make export BAG=bag [OUT=dir]`.
# `make help` lists them all.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: env demo demo-fusion demo-angles test bench offline export process help _video _bag
help:
	@echo 'make demo [ARGS="--video clip.mp4"]   live system + offline run (bundled clip or yours) -> demo_output/'
	@echo 'make demo-fusion [ARGS=...]          the 4-camera clip fused into one world skeleton -> demo_output/fusion/'
	@echo 'make demo-angles [ARGS=...]          joint angles (OpenSim IK) of the bundled clip -> demo_output/kinematics/'
	@echo 'make test                             the whole test suite'
	@echo 'make process VIDEO=clip.mp4 [OUT=name] video -> name/ (bag) -> name_export/ (CSV, TRC, npz)'
	@echo 'make offline VIDEO=clip.mp4 [OUT=bag] [ARGS=...]   vp3d-offline (ARGS: vp3d-offline --help)'
	@echo 'make export BAG=bag [OUT=dir] [ARGS=...]           vp3d-export (ARGS: vp3d-export --help)'
	@echo 'make bench                            benchmarks'
	@echo 'or: source $(VENV)/bin/activate, then vp3d-offline, vp3d-export, vp3d-lift directly'
env:
	bash scripts/setup_env.sh

demo: env
	source scripts/ros_env.sh && $(PY) -m vp3d_ros.apps.demo $(ARGS)

demo-fusion: env
	$(PY) -m vp3d_ros.apps.fusion_demo $(ARGS)

demo-angles: env
	$(PY) tools/kinematics_demo.py $(ARGS)

test: env
	source scripts/ros_env.sh && $(PY) -m pytest -q test $(ARGS)

bench: env
	source scripts/ros_env.sh && $(PY) benchmarks/run_all.py

# Your own video. Paths may contain spaces; OUT defaults as the tools do.
_video:
	@test -n "$(VIDEO)" || { echo 'usage: make $(MAKECMDGOALS) VIDEO=clip.mp4 [OUT=...] [ARGS=...]' >&2; exit 2; }

offline: _video env
	$(VENV)/bin/vp3d-offline "$(VIDEO)" $(if $(OUT),--out "$(OUT)") $(ARGS)

_bag:
	@test -n "$(BAG)" || { echo 'usage: make export BAG=bag [OUT=dir] [ARGS=...]' >&2; exit 2; }

export: _bag env
	$(VENV)/bin/vp3d-export "$(BAG)" --out-dir "$(or $(OUT),$(BAG)_export)" $(ARGS)

process: _video env
	$(eval BAG_ := $(or $(OUT),$(basename $(notdir $(VIDEO)))_landmarks))
	$(VENV)/bin/vp3d-offline "$(VIDEO)" --out "$(BAG_)" $(ARGS)
	$(VENV)/bin/vp3d-export "$(BAG_)" --out-dir "$(BAG_)_export"
