#!/usr/bin/env bash
# Regenerate requirements/lock-cpu-py311.txt from an installed environment (`make lock`; docs/install.md).
#
# The lock pins exactly what VENV has (`pip freeze --all`), restricted to the dependency closure of
# pyproject.toml with the `dev` and `gguf` extras, with the sha256 of every file the package indexes serve for each pin.
# uv resolves pyproject.toml under those pins as constraints, so a lock that differs from the venv (a package
# the project does not need, or a pin that does not satisfy pyproject.toml) fails here rather than at install.
# Needs network access to PyPI (hashes) and, for torch's CPU build, pip's find-links (PIP_FIND_LINKS).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
LOCK="${LOCK:-requirements/lock-cpu-py311.txt}"
UV_VERSION=0.13.10
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

if command -v uv >/dev/null 2>&1; then UV=uv; else
  python3 -m venv "$tmp/uv" && "$tmp/uv/bin/python" -m pip install -q "uv==$UV_VERSION" && UV="$tmp/uv/bin/uv"
fi
# The venv's exact versions (setuptools included: torch's CPU build requires it; pip is not a dependency).
"$VENV/bin/python" -m pip freeze --all --exclude-editable | grep -v -i -E '^(pip)==' > "$tmp/venv-freeze.txt"
find_links=()
IFS=' ' read -r -a dirs <<< "${PIP_FIND_LINKS:-}"
for d in "${dirs[@]}"; do find_links+=(--find-links "$d"); done

"$UV" pip compile pyproject.toml --extra dev --extra gguf -c "$tmp/venv-freeze.txt" --generate-hashes \
  --python-version 3.11 --python-platform x86_64-manylinux_2_28 "${find_links[@]}" \
  --no-header --annotation-style line --quiet -o "$tmp/lock.txt"
sed -i "s#-c $tmp/venv-freeze.txt#pip freeze of $VENV#g" "$tmp/lock.txt"

# Every package of the venv (but the project itself and pip) must be in the lock at the venv's version, and back.
norm() { grep -E '^[A-Za-z0-9]' "$1" | sed -E 's/ .*//' | awk -F'==' '{n=tolower($1); gsub(/[-_.]+/, "-", n); print n "==" $2}' | sort; }
if ! diff <(norm "$tmp/venv-freeze.txt") <(norm "$tmp/lock.txt") >"$tmp/diff"; then
  echo "lock.sh: the lock differs from $VENV (< venv, > lock):" >&2; cat "$tmp/diff" >&2; exit 1
fi

{
  cat <<HEADER
# subliminal-bench: the full dependency set (the project's dependencies, its \`dev\` and \`gguf\` extras, transitively) for
# CPython 3.11 on Linux x86-64, CPU torch. Pinned to exactly the versions the published results were made with,
# with the sha256 of every file PyPI serves for each pin. Read docs/install.md.
#
# Made by \`make lock\` (requirements/lock.sh, uv $UV_VERSION): uv pip compile pyproject.toml --extra dev --extra gguf
#   -c <pip freeze --all of $VENV> --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28
# Installed by \`make setup\` (make run, make test, .ci/run):
#   pip install --require-hashes --no-deps -r $LOCK && pip install --no-deps --no-build-isolation -e .
# Refresh: rm -rf .venv && make setup UNPINNED=1 && (make test) && make lock, then commit this file.
# torch==2.13.0+cpu is the CPU build (no CUDA libraries); its one hash is of
# torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl, found through pip's find-links (/opt/wheels here;
# elsewhere PyTorch's CPU index, PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu, whose file could not be
# compared with this hash from here).
HEADER
  cat "$tmp/lock.txt"
} > "$LOCK"
echo "wrote $LOCK ($(grep -c -E '^[A-Za-z0-9]' "$LOCK") pins, sha256 $(sha256sum "$LOCK" | cut -c1-12))"
