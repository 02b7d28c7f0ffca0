#!/usr/bin/env bash
# The GPU check of issue 20 in one command (benchmarks/gpu_check.py says what it measures):
#
#   benchmarks/gpu_check.sh [--wheelhouse DIR] [--data-dir DIR] [--budget-s S] OUTDIR   # on one GPU, <= 8 min
#   benchmarks/gpu_check.sh --rehearse OUTDIR                # the same, on the CPU at tiny sizes
#   benchmarks/gpu_check.sh --build-wheelhouse DIR           # where pip reaches the package index
#
# It writes OUTDIR/gpu_check.json and OUTDIR/gpu_check.md. The python is $PYTHON (default python3)
# with torch already there (never installed or changed here). What simvp_core needs besides torch,
# numpy and pandas is installed only when it is not importable: from the wheelhouse
# (--wheelhouse DIR or $SIMVP_WHEELHOUSE; pip --no-index --no-deps) into a folder of its own put
# on PYTHONPATH, so the machine's packages stay as they are. --build-wheelhouse downloads those
# wheels (Linux x86-64, CPython 3.12) at the versions of constraints.txt.
set -euo pipefail
export SIMVP_GPU_CHECK_START="${SIMVP_GPU_CHECK_START:-$(date +%s.%N)}"  # the budget counts from here
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
# module to import -> the distribution that provides it (each pinned in constraints.txt)
NEEDED="kornia:kornia kornia_rs:kornia_rs packaging:packaging pydantic:pydantic pydantic_core:pydantic_core
annotated_types:annotated-types typing_extensions:typing_extensions typing_inspection:typing-inspection
tabulate:tabulate"

usage() { echo "usage: benchmarks/gpu_check.sh [--rehearse] [--wheelhouse DIR] [--data-dir DIR] [--budget-s S] OUTDIR | --build-wheelhouse DIR" >&2; exit 2; }
pinned() {  # the constraints.txt line of a distribution, e.g. kornia==0.9.0
    grep -i "^$1==" constraints.txt || { echo "error: $1 is not pinned in constraints.txt" >&2; exit 2; }
}

REHEARSE="" WHEELHOUSE="${SIMVP_WHEELHOUSE:-}" OUT="" EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --rehearse) REHEARSE=--rehearse ;;
        --wheelhouse) [ $# -ge 2 ] || usage; WHEELHOUSE="$2"; shift ;;
        --data-dir|--budget-s) [ $# -ge 2 ] || usage; EXTRA+=("$1" "$2"); shift ;;
        --build-wheelhouse)
            [ $# -eq 2 ] || usage
            mkdir -p "$2"
            specs=(); for pair in $NEEDED; do specs+=("$(pinned "${pair#*:}")"); done
            "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
                --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
                --platform manylinux2014_x86_64 -d "$2" "${specs[@]}"
            ls -l "$2"; du -sh "$2"; exit 0 ;;
        -*) usage ;;
        *) [ -z "$OUT" ] || usage; OUT="$1" ;;
    esac
    shift
done
[ -n "$OUT" ] || usage

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
importable() { "$PY" -c "import simvp_core.config, simvp_core.losses, tabulate" 2>/dev/null; }
install() {  # the named distributions from the wheelhouse, into a folder first on PYTHONPATH
    if [ -z "$WHEELHOUSE" ]; then
        echo "error: missing $*; pass --wheelhouse DIR (make one with benchmarks/gpu_check.sh --build-wheelhouse DIR)" >&2
        exit 2
    fi
    SITE="${TMPDIR:-/tmp}/simvp-gpu-check-site"
    echo "installing $* from $WHEELHOUSE into $SITE"
    "$PY" -m pip install -q --no-index --no-deps --no-cache-dir --upgrade --find-links "$WHEELHOUSE" \
        --target "$SITE" "$@"
    export PYTHONPATH="$SITE:$PYTHONPATH"
}
if ! importable; then
    missing=()
    for pair in $NEEDED; do
        "$PY" -c "import ${pair%%:*}" 2>/dev/null || missing+=("${pair#*:}")
    done
    [ ${#missing[@]} -eq 0 ] || install "${missing[@]}"
    if ! importable; then  # a package there but too old for the others: take them all from the wheelhouse
        all=(); for pair in $NEEDED; do all+=("${pair#*:}"); done
        install "${all[@]}"
        importable || { echo "error: simvp_core still does not import with the wheelhouse's packages" >&2; exit 2; }
    fi
fi
exec "$PY" -m benchmarks.gpu_check $REHEARSE ${EXTRA[@]+"${EXTRA[@]}"} "$OUT"
