# One entry point for people and CI. `make test` works on a fresh machine: it creates the virtual
# environment, installs the project, starts Redis if none is running, and runs the whole suite.
VENV      ?= .venv
PY        := $(VENV)/bin/python
REDIS_URL ?= redis://localhost:6379/0
STAMP     := $(VENV)/.installed

.PHONY: install test lint demo demo-model redis browser bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned, so nothing else can pull a different build
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

redis:
	@redis-cli -p 6379 ping >/dev/null 2>&1 || redis-server --daemonize yes --port 6379 --save "" --appendonly no
	@for i in 1 2 3 4 5 6 7 8 9 10; do redis-cli -p 6379 ping >/dev/null 2>&1 && exit 0; sleep 0.5; done; \
	  echo "Redis did not start on port 6379" >&2; exit 1

# Best effort: the browser tests (headless Chromium) skip cleanly when it cannot be installed.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  timeout 600 sh -c 'apt-get install -y -qq chromium >/dev/null 2>&1 || \
	    (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1)'; } || \
	  echo "Chromium is not installed: the browser tests will be skipped"

test: install redis browser
	$(PY) -m pytest -q -ra --durations=15 $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check bot model training local_bot_api tests bench

demo: install redis
	$(PY) -m local_bot_api.demo

# The demo model (docs/demo-model.md): draws the picture world, trains every stage with training/run.py and
# writes model/checkpoints/demo. Run again: finished stages are reused, an interrupted one resumes.
# RECIPE_ARGS="--scale N": N times the data and steps (for a faster machine; bench/gpu_demo_recipe.sh on a GPU).
demo-model: install
	$(PY) -m training.demo_world.recipe --out runs/demo --export model/checkpoints/demo $(RECIPE_ARGS)

bench: install redis
	$(PY) bench/worker_throughput.py
	$(PY) bench/pipeline_overhead.py
	$(PY) bench/train_throughput.py
	$(PY) bench/load.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
