#!/usr/bin/env bash
# Makes (or brings up to date) the Python that runs metatrain's environment servers: a venv under
# .build/envserver with gymnasium, numpy, pytest and this repository's python/ package installed.
# Prints the interpreter's path. EXTRA_PACKAGES="box2d minigrid" adds what an example family needs.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.build/envserver/venv
want=(gymnasium==1.4.0 numpy==2.4.6 pytest==9.2.0)
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
if ! "$venv/bin/python" -c "import gymnasium, numpy, pytest" 2>/dev/null; then
  "$venv/bin/pip" install -q --disable-pip-version-check "${want[@]}" >&2
fi
if [ -n "${EXTRA_PACKAGES:-}" ]; then
  # shellcheck disable=SC2086
  "$venv/bin/pip" install -q --disable-pip-version-check $EXTRA_PACKAGES >&2
fi
# The package itself, anew each time (a second or two): the servers run what python/ holds now.
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps --force-reinstall ./python >&2
rm -rf python/build python/*.egg-info
echo "$PWD/$venv/bin/python"
