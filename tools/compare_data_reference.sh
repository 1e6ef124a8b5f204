#!/bin/sh
# Compares the C data pipeline with the reference seqdata.py on one corpus directory.
# Usage: tools/compare_data_reference.sh DIR word|char MIN_FREQ MAX_SIZE [builddir]
set -eu
cd "$(dirname "$0")/.."
BUILD=${5:-build}
tmp=$(mktemp -d)
"$BUILD/examples/dump_corpus" "$1" "$2" "$3" "$4" "$tmp/c.txt"
/usr/bin/python3 tools/dump_corpus_reference.py "$1" "$2" "$3" "$4" "$tmp/py.txt"
if cmp "$tmp/c.txt" "$tmp/py.txt"; then
    echo "identical: $(grep -c '' "$tmp/c.txt") lines ($(grep '^VOCAB' "$tmp/c.txt" | tr '\n' ' ')$(grep '^BLEU' "$tmp/c.txt"))"
    rm -r "$tmp"
else
    echo "DIFFERENT: see $tmp/c.txt and $tmp/py.txt"
    exit 1
fi
