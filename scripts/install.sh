#!/usr/bin/env bash
# Install everything vmcu uses, idempotently: Debian's ARM toolchain and QEMU (when missing and possible),
# a .venv with the package and its dev tools, and the QEMU instruction-counting plugin.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "vmcu needs Python >= 3.11 (found: $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi

DEBS=(gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)
missing=()
command -v arm-none-eabi-gcc >/dev/null || missing+=(gcc-arm-none-eabi libnewlib-arm-none-eabi)
[ -e /usr/lib/arm-none-eabi/newlib/libc.a ] || [ -e /usr/lib/arm-none-eabi/lib/libc.a ] \
  || missing+=(libnewlib-arm-none-eabi)
command -v qemu-system-arm >/dev/null || missing+=(qemu-system-arm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${DEBS[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo -n"
  if { [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; } \
     && $SUDO apt-get update -qq >/dev/null 2>&1 \
     && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${DEBS[@]}" >/dev/null; then
    echo "installed ${DEBS[*]}"
  else
    echo "WARNING: could not install ${DEBS[*]} (needs root and Debian's package archive)." >&2
    echo "         The host target works; cortex-m4/m7 need: apt-get install --no-install-recommends ${DEBS[*]}" >&2
  fi
fi

stamp=.venv/.vmcu-installed
want=$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setting up .venv (pip install -e .[dev])"
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".[dev]"
  echo "$want" > "$stamp"
fi

if command -v qemu-system-arm >/dev/null; then
  .venv/bin/python -c 'from vmcu.run.toolchain import ensure_plugin; ensure_plugin()'
fi
