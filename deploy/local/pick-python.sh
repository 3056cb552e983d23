#!/usr/bin/env bash
# Prints the path of a Python 3 to run schemathesis with: the first found of
# python3.14/3.13/3.12 on PATH, pyenv's installed versions (newest first) and
# python3, whose version is free of CPython's "AST constructor recursion
# depth mismatch" bug (fixed in 3.11.8 and 3.12.2; it breaks schemathesis's
# coverage phase at random). Without one, it prints python3 and warns.
set -euo pipefail
fixed='import sys; v = sys.version_info[:3]; sys.exit(0 if v >= (3, 12, 2) or (3, 11, 8) <= v < (3, 12) else 1)'
candidates=()
for name in python3.14 python3.13 python3.12; do
  if path=$(command -v "$name" 2>/dev/null); then candidates+=("$path"); fi
done
if [[ -d "${PYENV_ROOT:-$HOME/.pyenv}/versions" ]]; then
  while IFS= read -r dir; do candidates+=("$dir/bin/python3"); done < <(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.* 2>/dev/null | sort -rV)
fi
candidates+=(python3)
for py in "${candidates[@]}"; do
  if [[ -x "$py" || "$py" == python3 ]] && "$py" -c "$fixed" 2>/dev/null && "$py" -c 'import ensurepip' 2>/dev/null; then
    echo "$py"; exit 0
  fi
done
echo "warning: no Python >= 3.11.8 (3.12.2) found; schemathesis may fail with CPython's AST recursion bug" >&2
echo python3
