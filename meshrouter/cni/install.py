"""Install ``meshrouter-cni`` and a network configuration list on a host (the
DaemonSet's init container runs ``python -m meshrouter.cni.install``).

The runtime executes the plugin on the host, outside the router's image, so the
plugin is installed as a zip holding only the modules it imports (the
``meshrouter.cni`` package, the API client, ``addresses`` and ``errors``: the
standard library is all they need), ``meshrouter-cni.pyz``, and beside it the
executable ``meshrouter-cni``: five lines of Python (``#!/usr/bin/python3 -IS``)
that put the zip on ``sys.path`` and call ``main()``.  The host needs Python
3.11 or later and nothing else.  Why not a zipapp: running one goes through
``runpy`` and ``importlib.util`` (~25 ms of CPU per start), and the plugin is
started once per container and verb.  Files are written to a temporary
name and renamed, so a runtime never executes or reads a half-written file.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import py_compile
import sys
import tempfile
import zipfile
from pathlib import Path

import meshrouter

# The modules the plugin imports (checked by a test against sys.modules).
MODULES = ("__init__.py", "errors.py", "addresses.py", "api/__init__.py", "api/client.py",
           "cni/__init__.py", "cni/spec.py", "cni/netconf.py", "cni/result.py",
           "cni/plugin.py")
LAUNCHER = """import sys
sys.path.insert(0, __file__ + ".pyz")
from meshrouter.cni.plugin import main
main()
"""
# -I -S: no site-packages, no PYTHON* variables: the zip holds all the plugin needs.
INTERPRETER = "/usr/bin/python3 -IS"


def launcher_bytes(interpreter: str = INTERPRETER) -> bytes:
    """The executable: a shebang line, then the launcher."""
    return f"#!{interpreter}\n{LAUNCHER}".encode()


def zip_bytes() -> bytes:
    """The plugin's modules (sources and this interpreter's bytecode) as a zip."""
    package = Path(meshrouter.__file__).parent
    buffer = io.BytesIO()
    # stored, not deflated: zipimport would import zlib and inflate at every start
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for relative in MODULES:
            archive.write(package / relative, f"meshrouter/{relative}")
            archive.writestr(f"meshrouter/{relative}c", compiled(package / relative))
    return buffer.getvalue()


def compiled(source: Path) -> bytes:
    """``source`` as an unchecked-hash .pyc of this interpreter.  zipimport cannot
    cache bytecode, and compiling the plugin's modules at every start cost ~80 ms;
    a host Python of another version ignores these (magic number) and compiles the
    .py files beside them."""
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / "module.pyc"
        py_compile.compile(str(source), cfile=str(target), doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        return target.read_bytes()


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(temporary, mode)
    os.replace(temporary, path)


def install(bin_dir: Path, conf_dir: Path | None, conflist: Path | None,
            interpreter: str = INTERPRETER) -> list[Path]:
    """Write the plugin (and the conflist, checked to be JSON); the paths written."""
    written = [bin_dir / "meshrouter-cni.pyz", bin_dir / "meshrouter-cni"]
    write_atomically(written[0], zip_bytes(), 0o644)  # first: the launcher needs it
    write_atomically(written[1], launcher_bytes(interpreter), 0o755)
    if conf_dir is not None and conflist is not None:
        data = conflist.read_bytes()
        parsed = json.loads(data)
        if not isinstance(parsed, dict) or not isinstance(parsed.get("plugins"), list):
            raise ValueError(f"{conflist} is not a CNI network configuration list")
        written.append(conf_dir / conflist.name)
        write_atomically(written[-1], data, 0o644)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m meshrouter.cni.install",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin-dir", type=Path, default=Path("/opt/cni/bin"))
    parser.add_argument("--conf-dir", type=Path, default=None)
    parser.add_argument("--conflist", type=Path, default=None)
    parser.add_argument("--interpreter", default=INTERPRETER)
    options = parser.parse_args(argv)
    try:
        for path in install(options.bin_dir, options.conf_dir, options.conflist,
                            options.interpreter):
            print(f"installed {path}")
    except (OSError, ValueError) as exc:
        print(f"meshrouter-cni install failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
