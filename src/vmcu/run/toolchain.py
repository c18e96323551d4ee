"""Find the compilers and the emulator, and build the instruction-counting QEMU plugin once.

Every missing tool becomes a BuildError that says how to install it, so a user without the ARM
toolchain gets one actionable line instead of a FileNotFoundError.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

from vmcu.errors import BuildError

SUPPORT_DIR = Path(__file__).resolve().parent / "support"
ARM_INSTALL_HINT = (
    "run scripts/setup.sh or apt-get install --no-install-recommends "
    "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
)
_PLUGIN_SOURCES = ("insn_count.c", "qemu_plugin_api.h")


def _which(name: str, hint: str) -> Path:
    found = shutil.which(name)
    if found is None:
        raise BuildError(f"{name} not found: {hint}")
    return Path(found)


@cache
def host_cc() -> Path:
    """The native C compiler: $CC if set, else gcc, else cc."""
    for name in (os.environ.get("CC"), "gcc", "cc"):
        found = shutil.which(name) if name else None
        if found:
            return Path(found)
    raise BuildError("no C compiler found (set CC, or apt-get install gcc)")


@cache
def arm_gcc() -> Path:
    """arm-none-eabi-gcc, checked to have newlib (the nano specs) installed."""
    gcc = _which("arm-none-eabi-gcc", ARM_INSTALL_HINT)
    probe = subprocess.run([gcc, "-print-file-name=nano.specs"], capture_output=True, text=True, check=False)
    if not Path(probe.stdout.strip()).is_absolute():
        raise BuildError(f"newlib for arm-none-eabi not found: {ARM_INSTALL_HINT}")
    return gcc


@cache
def arm_binutil(name: str) -> Path:
    """An arm-none-eabi binutil ("size", "nm", ...)."""
    return _which(f"arm-none-eabi-{name}", ARM_INSTALL_HINT)


@cache
def qemu_arm() -> Path:
    """qemu-system-arm."""
    return _which("qemu-system-arm", ARM_INSTALL_HINT)


def arm_toolchain_missing() -> str | None:
    """Why ARM builds cannot run here (None if they can); for skipping tests with a reason."""
    try:
        arm_gcc()
        arm_binutil("size")
        arm_binutil("nm")
        qemu_arm()
    except BuildError as exc:
        return str(exc)
    return None


def cache_dir() -> Path:
    """Where built helpers are kept: $VMCU_CACHE_DIR, else $XDG_CACHE_HOME/vmcu, else ~/.cache/vmcu."""
    explicit = os.environ.get("VMCU_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vmcu"


def ensure_plugin() -> Path:
    """Build the insn_count QEMU plugin if this version of its source has not been built yet.

    The file name carries a hash of the sources and the compiler, so editing the plugin or
    switching compilers rebuilds it; the build goes to a temporary name first, so parallel test
    workers never load a half-written library.
    """
    cc = host_cc()
    digest = hashlib.sha256(str(cc).encode())
    for name in _PLUGIN_SOURCES:
        digest.update((SUPPORT_DIR / name).read_bytes())
    target = cache_dir() / f"insn_count-{digest.hexdigest()[:16]}.so"
    if target.exists():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BuildError(f"cannot create the cache directory {target.parent}: {exc}") from exc
    fd, tmp_name = tempfile.mkstemp(prefix=".insn_count-", suffix=".so", dir=target.parent)
    os.close(fd)
    cmd = [
        str(cc),
        "-shared",
        "-fPIC",
        "-O2",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-fvisibility=hidden",
        "-o",
        tmp_name,
        str(SUPPORT_DIR / "insn_count.c"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        Path(tmp_name).unlink(missing_ok=True)
        raise BuildError(f"building the QEMU plugin failed:\n{done.stderr.strip()}")
    os.replace(tmp_name, target)
    return target
