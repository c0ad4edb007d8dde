# Two commands on a fresh machine; each sets up .venv itself when it is missing.
PY := .venv/bin/python

.PHONY: setup demo test

setup:
	bash tools/setup.sh

demo: setup
	$(PY) tools/demo.py

test: setup
	$(PY) -m pytest -q
