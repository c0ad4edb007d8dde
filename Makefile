# Two commands on a fresh machine; each sets up .venv itself when it is missing.
PY := .venv/bin/python

.PHONY: setup demo test

setup:
	bash tools/setup.sh

# One thread: the demo's tensors are small, and extra threads only contend on a shared machine.
demo: setup
	OMP_NUM_THREADS=1 $(PY) tools/demo.py

test: setup
	$(PY) -m pytest -q
