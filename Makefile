# Two commands matter: `make demo` and `make test`. Each creates .venv and
# installs what it needs on first use; later runs reuse it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kerastroke-installed
# The backends the suite runs on, each in its own process.
BACKENDS := tensorflow jax torch
# PyTorch's CPU build: a plain `torch` from the registry is a CUDA build of several GB.
TORCH ?= torch==2.13.0

export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: demo test bench install clean $(addprefix test-,$(BACKENDS))

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[test,backends]' '$(TORCH)'
	# Compiles the CPU path's Numba loops into their cache now, not at the first application.
	$(BIN)/python -m kerastroke.accel.warm_up
	touch $(STAMP)

DEMO_OUT := out/compare

demo: $(STAMP)
	KERAS_BACKEND=$${KERAS_BACKEND:-tensorflow} $(BIN)/kerastroke compare --out $(DEMO_OUT)

# Every backend runs, even after one fails; the exit status is non-zero if any did.
test: $(STAMP)
	@failed=""; \
	for backend in $(BACKENDS); do \
		echo "=== kerastroke tests on $$backend ==="; \
		$(MAKE) --no-print-directory test-$$backend || failed="$$failed $$backend"; \
	done; \
	if [ -n "$$failed" ]; then echo "=== failed on:$$failed ==="; exit 1; fi

test-tensorflow test-torch: test-%: $(STAMP)
	KERAS_BACKEND=$* $(BIN)/python -m pytest

# JAX keeps float64 only in 64-bit mode; the suite tests float64 there
# (tests/test_backends.py checks what happens without it).
test-jax: $(STAMP)
	KERAS_BACKEND=jax JAX_ENABLE_X64=1 $(BIN)/python -m pytest

bench: $(STAMP)
	KERAS_BACKEND=$${KERAS_BACKEND:-tensorflow} $(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
