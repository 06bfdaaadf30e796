#!/usr/bin/env bash
# The GPU check (issue 13): build llama-server with CUDA, run studies/gpu-offload.yaml (full and partial
# offload), and write the samples, the report and a short summary under OUT (default benchmarks/results/gpu-check;
# $OUT when set). Exits 1 when the summary finds an expectation not met, 2 when there is no NVIDIA GPU.
#
#   benchmarks/gpu_check.sh [OUT]
#
# On a machine that reaches PyPI it sets up with `make install ENGINE=cuda`. On one that reaches no package
# registry, make a bundle first where one is reachable (benchmarks/gpu_bundle.sh) and bring .device/ along:
# then the check installs from it, on top of the Python packages that machine already has.
# About ten minutes on 16 cores and one GPU, most of it compiling llama.cpp's CUDA kernels.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-benchmarks/results/gpu-check}}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
started=$(date +%s)
step() { echo; echo "== $(( $(date +%s) - started )) s: $*"; }

if ! nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader; then
    echo "no NVIDIA GPU seen (nvidia-smi failed): nothing to check"; exit 2
fi
CUDA_ARCH=${CUDA_ARCH:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '.')}
command -v ninja >/dev/null && export CMAKE_GENERATOR=${CMAKE_GENERATOR:-Ninja}
nvcc --version | tail -2
# Some CUDA images have nvcc and the runtime but take cuBLAS from pip's nvidia packages (PyTorch's), and no
# unversioned libcuda.so: point CMake (and the loader) at what there is.
cuda_args=""
if ! ldconfig -p | grep -q 'libcublas\.so '; then
    cublas=$(python3 - <<'PY'
import glob, site
found = [f for p in site.getsitepackages() for f in sorted(glob.glob(p + "/nvidia/*/lib/libcublas.so.*"))]
print(found[0] if found else "")
PY
)
    if [ -n "$cublas" ]; then
        nv=$(dirname "$(dirname "$cublas")")
        echo "cuBLAS from pip's nvidia packages: $nv"
        cuda_args="-DCUDA_cublas_LIBRARY=$cublas -DCUDA_cublasLt_LIBRARY=$(ls "$nv"/lib/libcublasLt.so.* | head -1)"
        cuda_args="$cuda_args -DCMAKE_CUDA_FLAGS=-I$nv/include -DCMAKE_CXX_FLAGS=-I$nv/include"
        export LD_LIBRARY_PATH="$nv/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
fi
if ! ldconfig -p | grep -q 'libcuda\.so '; then
    driver=$(ldconfig -p | awk '/libcuda\.so\.1 /{print $NF; exit}')
    cuda_args="$cuda_args ${driver:+-DCUDA_cuda_driver_LIBRARY=$driver}"
    [ -n "$driver" ] || cuda_args="$cuda_args -DGGML_CUDA_NO_VMM=ON"  # then llama.cpp needs no libcuda at link
fi
export CUDA_CMAKE_ARGS="${CUDA_CMAKE_ARGS:-$cuda_args}"
echo "extra CMake flags: ${CUDA_CMAKE_ARGS:-none}"

BUNDLE=.device
if [ -d "$BUNDLE/wheels" ]; then
    step "offline set-up from $BUNDLE (this machine's own packages + the bundle's wheels)"
    python3 -m venv --without-pip .venv  # pip comes from the machine's packages, which the venv sees
    # The machine's packages stay visible in the venv (python3 may itself be a venv, which
    # --system-site-packages would skip).
    python3 -c 'import site; print("\n".join(site.getsitepackages()))' \
        > ".venv/lib/python$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')/site-packages/_machine.pth"
    .venv/bin/python -m pip install --quiet --no-index --no-deps "$BUNDLE"/wheels/*.whl
    .venv/bin/python -m pip install --quiet --no-index --no-deps --no-build-isolation -e .
    step "compiling llama.cpp with CUDA for sm_$CUDA_ARCH"
    make engine ENGINE=cuda CUDA_ARCH="$CUDA_ARCH" \
        PIP_ENGINE_FLAGS="--no-index --find-links $BUNDLE --no-build-isolation"
    mkdir -p data/models && cp "$BUNDLE"/models/*.gguf data/models/
else
    step "set-up: make install ENGINE=cuda (compiles llama.cpp with CUDA for sm_$CUDA_ARCH)"
    make install ENGINE=cuda CUDA_ARCH="$CUDA_ARCH"
fi
.venv/bin/latencylab engine version

step "the study: full and partial offload"
study="$OUT/gpu-offload.yaml"
model=$(ls "$BUNDLE"/models/*.gguf 2>/dev/null | head -1 | xargs -r basename | sed 's/\.gguf$//')
sed "s/smollm2-135m-q4_1/${model:-smollm2-135m-q4_1}/" studies/gpu-offload.yaml > "$study"
.venv/bin/latencylab run "$study" || echo "latencylab run exited with $?"
run=$(ls -td data/runs/*-gpu-offload | head -1)

if [ -z "${SKIP_ACCURACY:-}" ]; then  # SKIP_ACCURACY=1 leaves this out (about 25 s)
    step "what the client's NVML sampler costs (benchmarks/accuracy.py --quick, without then with it)"
    .venv/bin/python benchmarks/accuracy.py --quick --out "$OUT/accuracy-without-sampler.json" | tail -12
    .venv/bin/python benchmarks/accuracy.py --quick --gpu-sampler --out "$OUT/accuracy-with-sampler.json" | tail -12
fi

step "summary"
status=0
.venv/bin/python benchmarks/gpu_summary.py "$run" "$OUT/summary.json" || status=$?
tar -czf "$OUT/run-and-report.tar.gz" "$run" "reports/$(basename "$run")" 2>/dev/null || true
echo "run: $run  report: reports/$(basename "$run")/index.html  (both in $OUT/run-and-report.tar.gz)"
step "done"
exit $status
