"""Theory of operation: what a runtime hands the plugin, validated before any request.

A runtime passes the verb and the container in environment variables
(``CNI_COMMAND``, ``CNI_CONTAINERID``, ``CNI_NETNS``, ``CNI_IFNAME``,
``CNI_ARGS``, ``CNI_PATH``) and the network configuration as JSON on stdin.
Both are parsed here completely, and every problem becomes a ``CniError`` with
the spec's code (4: environment, 6: undecodable, 7: bad configuration, 1:
version) and a message that names the variable or field and what to write
instead.  Pure: the caller passes the environment mapping and the bytes.

The router keys attachments by one ID of at most 128 characters
(``[A-Za-z0-9][A-Za-z0-9_.-]*``); a CNI attachment is (container ID,
interface), so ``attachment_id`` maps the pair to ``cni-<container>`` (plus
``-<ifname>`` for a second interface), or to a hash of the pair when that
does not fit.  The ``cni-`` prefix is how GC tells the plugin's attachments
from those made with ``meshrouter attach``.
"""

from __future__ import annotations

import json

from meshrouter.cni.spec import (
    DECODE_FAILURE,
    INVALID_ENVIRONMENT,
    INVALID_NETWORK_CONFIG,
    VERBS,
    CniError,
    check_version,
)

TYPE_CHECKING = False  # typing costs ~6 ms per start; mypy reads this name as True
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

MAX_CONFIG = 1024 * 1024  # bytes read from stdin
DEFAULT_API = "127.0.0.1:6784"
DEFAULT_TIMEOUT = 60.0  # an ADD may wait for IPAM (the router waits up to 30 s)
ATTACHMENT_PREFIX = "cni-"
MAX_ID = 128
# Character classes as sets, not regular expressions: compiling a pattern costs
# ~1 ms of a start that happens once per container.
_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_ID_CHARS = _ALNUM | frozenset("_.-")
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def is_id(text: str) -> bool:
    """``[A-Za-z0-9][A-Za-z0-9_.-]*``: a router ID, a container ID, a network name."""
    return bool(text) and text[0] in _ALNUM and _ID_CHARS.issuperset(text)


def is_ifname(text: str) -> bool:
    """``[A-Za-z0-9_.-]{1,15}``: a Linux interface name this plugin accepts."""
    return 1 <= len(text) <= 15 and _ID_CHARS.issuperset(text)


class Invocation:
    """The environment of one call (a plain class: NamedTuple and dataclasses
    would import typing or inspect at every start)."""

    __slots__ = ("args", "command", "container_id", "ifname", "netns", "path")

    def __init__(self, command: str, container_id: str = "", netns: str = "",
                 ifname: str = "", args: dict[str, str] | None = None,
                 path: tuple[str, ...] = ()) -> None:
        self.command = command
        self.container_id = container_id
        self.netns = netns
        self.ifname = ifname
        self.args: dict[str, str] = args if args is not None else {}
        self.path = path


class NetConf:
    """The network configuration (the fields this plugin reads; others are ignored)."""

    __slots__ = ("address_file", "api", "cni_version", "dns", "mtu", "name", "prev_result",
                 "runtime_ips", "timeout", "valid_attachments")

    def __init__(self, cni_version: str, name: str, api: str = DEFAULT_API,
                 address_file: str = "", mtu: int | None = None,
                 timeout: float = DEFAULT_TIMEOUT, dns: dict[str, Any] | None = None,
                 prev_result: dict[str, Any] | None = None,
                 valid_attachments: tuple[tuple[str, str], ...] | None = None,
                 runtime_ips: tuple[str, ...] = ()) -> None:
        self.cni_version = cni_version
        self.name = name
        self.api = api
        self.address_file = address_file
        self.mtu = mtu
        self.timeout = timeout
        self.dns = dns
        self.prev_result = prev_result
        self.valid_attachments = valid_attachments
        self.runtime_ips = runtime_ips


def parse_environment(env: Mapping[str, str]) -> Invocation:
    """The ``CNI_*`` variables of one call; CniError code 4 names what is missing."""
    command = env.get("CNI_COMMAND", "")
    if command not in VERBS:
        shown = f"{command[:20]!r}" if command else "not set"
        raise CniError(INVALID_ENVIRONMENT, f"CNI_COMMAND is {shown}; it must be one of "
                       f"{', '.join(VERBS)} (meshrouter-cni is run by a container runtime)")
    container_id = env.get("CNI_CONTAINERID", "")
    netns = env.get("CNI_NETNS", "")
    ifname = env.get("CNI_IFNAME", "")
    if command in ("ADD", "DEL", "CHECK"):
        if not container_id:
            raise CniError(INVALID_ENVIRONMENT, f"CNI_CONTAINERID is required for {command}")
        if len(container_id) > 1024 or not is_id(container_id):
            raise CniError(INVALID_ENVIRONMENT, f"CNI_CONTAINERID {container_id[:40]!r} must "
                           "be letters, digits, '_', '.' or '-', starting with a letter or digit")
        if not ifname:
            raise CniError(INVALID_ENVIRONMENT, f"CNI_IFNAME is required for {command}")
        if not is_ifname(ifname):
            raise CniError(INVALID_ENVIRONMENT, f"CNI_IFNAME {ifname[:40]!r} must be 1-15 "
                           "letters, digits, '_', '.' or '-'")
        if command != "DEL" and not netns:
            raise CniError(INVALID_ENVIRONMENT, f"CNI_NETNS is required for {command}")
        if len(netns) > 4096 or "\0" in netns:
            raise CniError(INVALID_ENVIRONMENT, "CNI_NETNS must be a namespace path")
    return Invocation(command, container_id, netns, ifname, parse_cni_args(env.get("CNI_ARGS", "")),
                      tuple(p for p in env.get("CNI_PATH", "").split(":") if p))


def parse_cni_args(text: str) -> dict[str, str]:
    """``K1=V1;K2=V2`` -> dict; CniError code 4 for a pair without ``=``."""
    out: dict[str, str] = {}
    if len(text) > 64 * 1024:
        raise CniError(INVALID_ENVIRONMENT, "CNI_ARGS is longer than 64 KiB")
    for pair in text.split(";"):
        if not pair:
            continue
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise CniError(INVALID_ENVIRONMENT, f"CNI_ARGS item {pair[:40]!r} is not KEY=VALUE")
        out[key] = value
    return out


def decode_config(data: bytes) -> dict[str, Any]:
    """The JSON object on stdin; CniError code 6 when it is not one."""
    if len(data) > MAX_CONFIG:
        raise CniError(DECODE_FAILURE, f"network configuration on stdin exceeds {MAX_CONFIG} "
                       "bytes")
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise CniError(DECODE_FAILURE, "network configuration on stdin is not valid JSON",
                       str(exc)) from None
    if not isinstance(value, dict):
        raise CniError(DECODE_FAILURE, "network configuration on stdin must be a JSON object")
    return value


def parse_netconf(raw: Mapping[str, Any]) -> NetConf:
    """A validated ``NetConf``; CniError 1 (version) or 7 (a field, named)."""
    version = raw.get("cniVersion")
    if not isinstance(version, str) or not version:
        raise CniError(INVALID_NETWORK_CONFIG, 'network configuration needs "cniVersion" '
                       '(a string such as "1.1.0")')
    check_version(version)
    name = raw.get("name")
    if not isinstance(name, str) or not is_id(name) or len(name) > 255:
        raise CniError(INVALID_NETWORK_CONFIG, 'network configuration needs "name": letters, '
                       "digits, '_', '.' or '-', starting with a letter or digit")
    api = _text(raw, "api", DEFAULT_API)
    address_file = _text(raw, "addressFile", "")
    mtu = raw.get("mtu")
    if mtu is not None and (not isinstance(mtu, int) or isinstance(mtu, bool)
                            or not 576 <= mtu <= 65535):
        raise CniError(INVALID_NETWORK_CONFIG, '"mtu" must be an integer 576..65535')
    timeout = raw.get("timeout", DEFAULT_TIMEOUT)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not 0 < timeout <= 600:
        raise CniError(INVALID_NETWORK_CONFIG, '"timeout" must be a number of seconds (0, 600]')
    dns = raw.get("dns")
    if dns is not None and not isinstance(dns, dict):
        raise CniError(INVALID_NETWORK_CONFIG, '"dns" must be an object (nameservers, domain, '
                       "search, options)")
    prev = raw.get("prevResult")
    if prev is not None and not isinstance(prev, dict):
        raise CniError(INVALID_NETWORK_CONFIG, '"prevResult" must be an object')
    return NetConf(version, name, api, address_file, mtu, float(timeout), dns, prev,
                   _valid_attachments(raw), _runtime_ips(raw))


def _text(raw: Mapping[str, Any], key: str, default: str) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or len(value) > 4096:
        raise CniError(INVALID_NETWORK_CONFIG, f'"{key}" must be a string')
    return value


def _valid_attachments(raw: Mapping[str, Any]) -> tuple[tuple[str, str], ...] | None:
    value = raw.get("cni.dev/valid-attachments")
    if value is None:
        return None
    if not isinstance(value, list):
        raise CniError(INVALID_NETWORK_CONFIG, '"cni.dev/valid-attachments" must be a list')
    out = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("containerID"), str) \
                or not isinstance(item.get("ifname"), str):
            raise CniError(INVALID_NETWORK_CONFIG, '"cni.dev/valid-attachments" items need '
                           '"containerID" and "ifname" strings')
        out.append((item["containerID"], item["ifname"]))
    return tuple(out)


def _runtime_ips(raw: Mapping[str, Any]) -> tuple[str, ...]:
    runtime = raw.get("runtimeConfig")
    if runtime is None:
        return ()
    if not isinstance(runtime, dict):
        raise CniError(INVALID_NETWORK_CONFIG, '"runtimeConfig" must be an object')
    ips = runtime.get("ips", [])
    if not isinstance(ips, list) or not all(isinstance(i, str) for i in ips):
        raise CniError(INVALID_NETWORK_CONFIG, '"runtimeConfig.ips" must be a list of strings')
    return tuple(ips)


def attachment_id(container_id: str, ifname: str) -> str:
    """The router's ID for the attachment (container ID, interface); see the module doc."""
    plain = ATTACHMENT_PREFIX + container_id + ("" if ifname == "eth0" else f"-{ifname}")
    if len(plain) <= MAX_ID and is_id(plain):
        return plain
    import hashlib  # only for IDs that do not fit: most starts never pay for it

    digest = hashlib.sha256(f"{container_id}\0{ifname}".encode()).hexdigest()
    return f"{ATTACHMENT_PREFIX}h{digest}"


def requested_ip(inv: Invocation, conf: NetConf) -> str | None:
    """A static address asked by ``CNI_ARGS`` ``IP=`` or ``runtimeConfig.ips``."""
    if inv.args.get("IP"):
        return inv.args["IP"]
    if conf.runtime_ips:
        if len(conf.runtime_ips) > 1:
            raise CniError(INVALID_NETWORK_CONFIG, "meshrouter gives a container one address; "
                           "runtimeConfig.ips lists more")
        return conf.runtime_ips[0]
    return None


def container_name(inv: Invocation) -> str:
    """The DNS name of the container: ``K8S_POD_NAME`` (or ``NAME``) as a DNS label, or ''."""
    raw = inv.args.get("NAME") or inv.args.get("K8S_POD_NAME") or ""
    # every run of characters outside [a-z0-9-] becomes one '-'
    marked = "".join(c if c in _LABEL_CHARS else "\0" for c in raw.lower())
    label = "-".join(part for part in marked.split("\0") if part)
    return label.strip("-")[:63].rstrip("-")
