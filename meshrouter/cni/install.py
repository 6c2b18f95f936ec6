"""Install ``meshrouter-cni`` and a network configuration list on a host (the
DaemonSet's init container runs ``python -m meshrouter.cni.install``).

The runtime executes the plugin on the host, outside the router's image, so the
plugin is installed as one zipapp holding only the modules it imports (the
``meshrouter.cni`` package, the API client, ``addresses`` and ``errors``: the
standard library is all they need) behind ``#!/usr/bin/env python3``; the host
needs Python 3.11 or later and nothing else.  Files are written to a temporary
name and renamed, so a runtime never executes or reads a half-written file.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import zipfile
from pathlib import Path

import meshrouter

# The modules the plugin imports (checked by a test against sys.modules).
MODULES = ("__init__.py", "errors.py", "addresses.py", "api/__init__.py", "api/client.py",
           "cni/__init__.py", "cni/spec.py", "cni/netconf.py", "cni/result.py",
           "cni/plugin.py")
MAIN = "from meshrouter.cni.plugin import main\nmain()\n"
INTERPRETER = "/usr/bin/env python3"


def zipapp_bytes(interpreter: str = INTERPRETER) -> bytes:
    """The executable plugin: a shebang line, then a zip of the plugin's modules."""
    package = Path(meshrouter.__file__).parent
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("__main__.py", MAIN)
        for relative in MODULES:
            archive.write(package / relative, f"meshrouter/{relative}")
    return f"#!{interpreter}\n".encode() + buffer.getvalue()


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
    written = [bin_dir / "meshrouter-cni"]
    write_atomically(written[0], zipapp_bytes(interpreter), 0o755)
    if conf_dir is not None and conflist is not None:
        data = conflist.read_bytes()
        parsed = json.loads(data)
        if not isinstance(parsed, dict) or not isinstance(parsed.get("plugins"), list):
            raise ValueError(f"{conflist} is not a CNI network configuration list")
        written.append(conf_dir / conflist.name)
        write_atomically(written[1], data, 0o644)
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
