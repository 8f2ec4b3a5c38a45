#!/usr/bin/env bash
# The pure-Python packages that the device image lacks (cmm_core needs ott-jax, jaxopt and blackjax;
# benchmarks/peers.py needs flowjax and paramax), as wheels for its Python 3.12, into .whl/ (kept out
# of git through .git/info/exclude), at the versions installed here, which the tests ran with.
# Run here once per session, then carry ".whl" in the device call (benchmarks/gpu_run.py).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir -p .whl
for name in ott-jax jaxopt blackjax flowjax paramax; do
  version=$(python -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')
  if [ -z "$version" ]; then
    echo "gpu_wheels: $name is not installed here (pip install -e \".[dev,peers]\" first)" >&2
    exit 1
  fi
  python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "$name==$version"
done
ls -1 .whl
du -sh .whl
