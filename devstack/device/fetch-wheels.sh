#!/usr/bin/env bash
# Here (a machine that reaches the package registry): download wheels.txt as CPython 3.12 x86-64
# manylinux wheels into .whl/ at the repository root (ignored by git), for a `run` on a lent device
# machine that names `.whl` in `carry` (the tree plus the wheels stay under the 64 MiB a call allows).
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .whl && mkdir .whl
platforms=()
for p in manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
  platforms+=(--platform "${p}_x86_64")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
  -d .whl -r devstack/device/wheels.txt
echo "fetch-wheels: $(ls .whl | wc -l) wheels, $(du -sh .whl | cut -f1) in .whl/"
