#!/usr/bin/env bash
# Run ON THE LENT GPU MACHINE, in the repository root: `--backend lmdeploy` checked for real.
#
#   bash tools/device/lmdeploy_check.sh stash   # calls 1..N-1, each carrying one .whl/lmdeploy-K
#   bash tools/device/lmdeploy_check.sh test    # call N, carrying the last part: unpack, GPU tests (~5 min at most)
#   bash tools/device/lmdeploy_check.sh bench   # call N+1, carrying nothing: the benchmark rows (~7 min at most)
#
# The parts (tools/device/fetch_lmdeploy.sh, run where there is network) are too large for one
# call, so each call leaves its part in /tmp, which lasts while the machine stays warm (make the
# calls back to back). `run` checks the parts against their manifest, unpacks them into /tmp/site,
# then runs the GPU tests and the benchmark; logs go to $OUT (they come back to the caller).
set -uo pipefail

PARTS=/tmp/lmdeploy-parts
SITE=/tmp/site
OUT=${OUT:-/tmp/lmdeploy-out}
mkdir -p "$PARTS" "$OUT"

for folder in .whl/lmdeploy-*; do
    [ -d "$folder" ] && cp "$folder"/* "$PARTS"/
done
echo "parts here: $(cd "$PARTS" && ls part-* 2>/dev/null | tr '\n' ' ')"
[ "${1:-test}" = stash ] && exit 0

cd "$PARTS" || exit 1
missing=$(awk '$2 ~ /^part-/ {print $2}' manifest.sha256 | while read -r p; do [ -f "$p" ] || echo "$p"; done)
if [ -n "$missing" ]; then
    echo "missing parts: $missing (carry each .whl/lmdeploy-K once, back to back)"; exit 3
fi
grep ' part-' manifest.sha256 | sha256sum -c --quiet || { echo "a part is corrupt"; exit 3; }
if [ ! -f "$SITE/.complete" ]; then
    rm -rf "$SITE" && mkdir -p "$SITE"
    # Python's lzma, in case the image has no xz.
    cat part-* | python3 -c "import sys, tarfile; tarfile.open(fileobj=sys.stdin.buffer, mode='r|xz').extractall('$SITE')" \
        && touch "$SITE/.complete" || { echo "unpacking failed"; exit 3; }
fi
cd - > /dev/null

export PYTHONPATH="$PWD:$SITE" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TM_LOG_LEVEL=ERROR
# TurboMind links libnccl.so.2: the image's (from its CUDA 13 NCCL wheel) serves; cuBLAS 12 and the
# CUDA 12 runtime come with the parts and are found through TurboMind's RPATH.
nccl=$(python3 -c "
import glob, os, sys
hits = [h for base in sys.path if base for h in glob.glob(os.path.join(base, 'nvidia', '**', 'libnccl.so.2'), recursive=True)]
print(os.path.dirname(hits[0]) if hits else '')")
export LD_LIBRARY_PATH="${nccl:+$nccl:}${LD_LIBRARY_PATH:-}"
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    python3 -c "import torch, lmdeploy; print('torch', torch.__version__, 'lmdeploy', lmdeploy.__version__)"
    python3 -c "from lmdeploy.lib import _turbomind; print('TurboMind library loads')"
    python3 -m soprano_cli doctor | grep -E 'backend|device'
} 2>&1 | tee "$OUT/setup.log"

if [ "${1:-test}" = test ]; then
    timeout 420 python3 -m pytest -q -rs tests/engine/test_lmdeploy_gpu.py 2>&1 | tee "$OUT/tests.log"
    exit
fi
timeout 540 python3 benchmarks/bench_engine.py --device cuda --modes bfloat16 --counts 1,8,64 --no-transformers \
    --backend lmdeploy --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.log"
