# The README's two commands are `make run` and `make test`; both set everything up first.
PYTHON ?=
VENV := .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install run test bench demo-data clean

install:
	@PYTHON="$(PYTHON)" bash scripts/install.sh

# Main job: federated contrastive learning on the bundled real demo data, then the results table.
run: install
	$(PY) -m programs.train --output_dir=results/demo_fcl
	@cat results/demo_fcl/summary.md

test: install
	$(PY) -m pytest -q tests

# Speed and memory targets (each prints a table); see the closing notes of the issues for measured values.
bench: install
	$(PY) -m bench.bench_prepare --quick
	$(PY) -m bench.bench_extract
	$(PY) -m bench.bench_round
	$(PY) -m bench.bench_score
	$(PY) -m bench.bench_workers --clients 90

# Rebuilds data/demo from the real captures in ../shared/data/pcaps (byte-identical to the committed copy).
demo-data: install
	$(PY) -m data_prep.build_demo_data --pcap_root ../shared/data/pcaps --output_dir data/demo

clean:
	rm -rf $(VENV) results
