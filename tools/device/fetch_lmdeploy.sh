#!/usr/bin/env bash
# Run HERE (with network), in the repository root: fetch what `--backend lmdeploy` needs on the lent
# GPU machine (Python 3.12, x86-64, CUDA 13 image, no network) and pack it into parts that fit one
# device call each. See tools/device/README.md.
#
#   tools/device/fetch_lmdeploy.sh            # -> .whl/lmdeploy-1/ .. .whl/lmdeploy-N/ (ignored by git)
#
# Wheels are unpacked into one site folder and packed as a tar.xz: TurboMind's and cuBLAS's GPU
# code packs tighter with xz than in their wheels' zip (473 MiB against 650 MiB measured), three
# calls fewer. Each part folder holds one piece and the manifest of all of them.
set -euo pipefail

OUT=.whl
PART_MB=${PART_MB:-50}  # a call carries 64 MiB in all, and the working tree itself is about 8 MiB
WORK=${WORK:-/tmp/soprano-lmdeploy-fetch}
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)

# What the device image lacks (KINDS.md lists what it has): lmdeploy, the CUDA 12 libraries its
# TurboMind extension links (cuBLAS, the runtime; NCCL comes from the image's own libnccl.so.2), the
# pure-Python packages `import lmdeploy` reaches, and for the parity tests the reference package
# soprano-tts with what its import needs.
PINNED=(
    lmdeploy==0.14.0
    nvidia-cublas-cu12==12.9.3.13
    nvidia-cuda-runtime-cu12==12.9.79
    mmengine-lite==0.10.7 yapf==0.43.0 addict termcolor platformdirs shortuuid pybase64
    soprano-tts==0.2.0 unidecode inflect jaraco.functools more-itertools typeguard num2words
)
# Resolved with their dependencies, so pydantic and pydantic-core agree.
RESOLVED=(pydantic sniffio)

rm -rf "$WORK" && mkdir -p "$WORK/wheels" "$WORK/site"
pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLATFORMS[@]}" \
    -d "$WORK/wheels" "${PINNED[@]}"
pip download -q --only-binary=:all: --python-version 3.12 --implementation cp "${PLATFORMS[@]}" \
    -d "$WORK/wheels" "${RESOLVED[@]}"
# The image has these; a second copy would shadow it.
rm -f "$WORK"/wheels/typing_extensions-*.whl
ls -l "$WORK/wheels"

# A wheel is a zip laid out as site-packages: unpacking is installing (no scripts are needed there).
python3 - "$WORK/wheels" "$WORK/site" <<'PY'
import sys, zipfile, pathlib
wheels, site = map(pathlib.Path, sys.argv[1:])
for wheel in sorted(wheels.glob("*.whl")):
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
PY
# cuBLAS's wheel also carries libnvblas (unused) and headers; TurboMind needs libcublas and libcublasLt.
rm -rf "$WORK"/site/nvidia/cublas/include "$WORK"/site/nvidia/cublas/lib/libnvblas.so.*
du -sh "$WORK/site"

tar -C "$WORK/site" -cf - . | xz -T0 -6 > "$WORK/site.tar.xz"
rm -rf "$OUT"/lmdeploy-*
mkdir -p "$OUT"
split -b "${PART_MB}M" -d -a 2 "$WORK/site.tar.xz" "$WORK/part-"
(cd "$WORK" && sha256sum site.tar.xz part-* > manifest.sha256)
n=0
for part in "$WORK"/part-*; do
    n=$((n + 1))
    mkdir -p "$OUT/lmdeploy-$n"
    mv "$part" "$OUT/lmdeploy-$n/"
    cp "$WORK/manifest.sha256" "$OUT/lmdeploy-$n/"
done
ls -l "$OUT"/lmdeploy-*/
echo "$n parts: carry .whl/lmdeploy-1 .. .whl/lmdeploy-$n, one per call (tools/device/README.md)"
