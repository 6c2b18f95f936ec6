"""The deployment files parse and carry what issue 14 requires; the installer's
zip runs on its own (only the standard library besides its own modules)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from meshrouter.cni.install import MODULES, install

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (pip install pyyaml)")

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def manifests() -> dict[str, dict[str, Any]]:
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "meshrouter.yaml").read_text()))
    return {doc["kind"]: doc for doc in docs if doc}


def test_daemonset_has_the_required_fields() -> None:
    docs = manifests()
    assert set(docs) == {"ConfigMap", "DaemonSet"}
    spec = docs["DaemonSet"]["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True
    router = next(c for c in spec["containers"] if c["name"] == "router")
    assert router["securityContext"]["privileged"] is True
    assert router["readinessProbe"]["httpGet"]["path"] == "/status"
    assert router["readinessProbe"]["httpGet"]["port"] == 6784
    command = " ".join(router["command"] + router["args"])
    assert "launch peer" in command and "--api 127.0.0.1:6784" in command
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in router["volumeMounts"]}
    # data dir on a host path
    data_flag = command.split("--data-dir ", 1)[1].split()[0]
    assert volumes[mounts[data_flag]]["hostPath"]["path"] == "/var/lib/meshrouter"
    # password from a Secret
    password_flag = command.split("--password-file ", 1)[1].split()[0]
    secret_volume = volumes[mounts[str(Path(password_flag).parent)]]
    assert secret_volume["secret"]["secretName"] == "meshrouter-secret"
    assert secret_volume["secret"]["items"] == [{"key": "password",
                                                 "path": Path(password_flag).name}]
    # the init container installs the binary and the conflist on host paths
    init = spec["initContainers"][0]
    assert init["command"][:3] == ["python", "-m", "meshrouter.cni.install"]
    init_mounts = {m["mountPath"]: m["name"] for m in init["volumeMounts"]}
    args = init["command"]
    bin_dir = args[args.index("--bin-dir") + 1]
    conf_dir = args[args.index("--conf-dir") + 1]
    assert volumes[init_mounts[bin_dir]]["hostPath"]["path"] == "/opt/cni/bin"
    assert volumes[init_mounts[conf_dir]]["hostPath"]["path"] == "/etc/cni/net.d"
    conflist = Path(args[args.index("--conflist") + 1])
    config_volume = volumes[init_mounts[str(conflist.parent)]]
    assert config_volume["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    embedded = json.loads(docs["ConfigMap"]["data"][conflist.name])
    assert embedded["plugins"][0]["type"] == "meshrouter-cni"


def test_example_conflist() -> None:
    conflist = json.loads((DEPLOY / "cni" / "10-meshrouter.conflist").read_text())
    assert conflist["cniVersion"] == "1.1.0" and conflist["name"]
    assert conflist["plugins"][0]["type"] == "meshrouter-cni"


UNIT = DEPLOY / "systemd" / "meshrouter.service"
HARDENING = ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp",
             "CapabilityBoundingSet", "RestrictAddressFamilies", "ProtectKernelModules",
             "ProtectControlGroups", "RestrictSUIDSGID", "LockPersonality")


def unit_keys(text: str) -> dict[str, str]:
    keys: dict[str, str] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            keys.setdefault(key.strip(), value.strip())
    return keys


def test_unit_carries_hardening_and_the_password_as_a_credential() -> None:
    keys = unit_keys(UNIT.read_text())
    missing = [k for k in HARDENING if k not in keys]
    assert not missing, f"hardening options missing: {missing}"
    assert keys["ProtectSystem"] == "strict" and keys["NoNewPrivileges"] == "yes"
    assert keys["LoadCredential"].startswith("password:")
    assert "--password-file ${CREDENTIALS_DIRECTORY}/password" in keys["ExecStart"]
    assert keys["StateDirectory"] == "meshrouter"


def test_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    meshrouter = shutil.which("meshrouter")
    if analyze is None or meshrouter is None:
        pytest.skip("systemd-analyze or the meshrouter script is not installed")
    unit = tmp_path / "meshrouter.service"
    # The unit names /usr/local/bin/meshrouter; verify checks that it exists.
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/meshrouter", meshrouter))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                            timeout=60, check=False)
    ours = [line for line in (result.stdout + result.stderr).splitlines()
            if "meshrouter.service" in line]
    assert result.returncode == 0 and not ours, result.stdout + result.stderr


def test_installer_writes_a_zip_that_needs_nothing_else(tmp_path: Path) -> None:
    conflist = DEPLOY / "cni" / "10-meshrouter.conflist"
    written = install(tmp_path / "bin", tmp_path / "net.d", conflist,
                      interpreter=sys.executable)
    plugin = tmp_path / "bin" / "meshrouter-cni"
    assert written == [tmp_path / "bin" / "meshrouter-cni.pyz", plugin,
                       tmp_path / "net.d" / conflist.name]
    assert os.access(plugin, os.X_OK)
    assert (tmp_path / "net.d" / conflist.name).read_bytes() == conflist.read_bytes()
    # -I: isolated, so the installed meshrouter package cannot be found: only the zip's
    env = {"PATH": "/usr/bin:/bin", "CNI_COMMAND": "VERSION"}
    result = subprocess.run([sys.executable, "-I", str(plugin)], input="{}", env=env,
                            capture_output=True, text=True, timeout=30, check=False,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["cniVersion"] == "1.1.0"
    bad = subprocess.run([sys.executable, "-I", str(plugin)], input="{}",
                         env={**env, "CNI_COMMAND": "ADD"}, capture_output=True, text=True,
                         timeout=30, check=False, cwd=tmp_path)
    assert bad.returncode == 1 and json.loads(bad.stdout)["code"] == 4


def test_zip_lists_every_module_the_plugin_imports() -> None:
    probe = ("import sys, meshrouter.cni.plugin; print('\\n'.join(sorted(m for m in "
             "sys.modules if m.startswith('meshrouter'))))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=REPO, timeout=30, check=True).stdout.split()
    as_files = {m.removeprefix("meshrouter").lstrip(".").replace(".", "/") for m in loaded}
    listed = {f.removesuffix(".py").removesuffix("/__init__").removesuffix("__init__")
              for f in MODULES}
    assert as_files == listed


# What a start must not pay for (the plugin runs once per container and verb): the
# router's libraries, an HTTP or TLS stack, and modules that cost milliseconds to import.
HEAVY = {"trio", "click", "pyroute2", "cryptography", "msgpack", "http", "email", "ssl",
         "urllib", "dataclasses", "inspect", "hashlib", "asyncio", "threading", "subprocess",
         "argparse", "logging", "pathlib", "tempfile", "zlib",  # zlib: the zip is stored
         "typing"}  # ~6 ms a start: errors and the API client import it only for mypy


def modules_after(tmp_path: Path, *imports: str) -> set[str]:
    """The top-level modules the installed zip's ``imports`` load in a bare
    ``python -IS`` beyond what the interpreter loads by itself."""
    install(tmp_path / "bin", None, None)
    probe = ("import sys; before = set(sys.modules); sys.path.insert(0, sys.argv[1]); "
             + "; ".join(f"import {name}" for name in imports)
             + "; print(' '.join(sorted(set(sys.modules) - before)))")
    out = subprocess.run([sys.executable, "-IS", "-c", probe,
                          str(tmp_path / "bin" / "meshrouter-cni.pyz")],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return {name.split(".")[0] for name in out.split()}


def test_a_start_imports_nothing_heavy(tmp_path: Path) -> None:
    loaded = modules_after(tmp_path, "meshrouter.cni.plugin")
    assert "meshrouter" in loaded and "json" in loaded  # the probe saw the imports
    assert not loaded & HEAVY, sorted(loaded & HEAVY)


def test_installer_refuses_a_file_that_is_not_a_conflist(tmp_path: Path) -> None:
    bogus = tmp_path / "x.conflist"
    bogus.write_text('{"name": "x"}')
    with pytest.raises(ValueError, match="not a CNI network configuration list"):
        install(tmp_path / "bin", tmp_path / "net.d", bogus)
    assert not (tmp_path / "net.d" / "x.conflist").exists()
