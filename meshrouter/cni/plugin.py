"""``meshrouter-cni``: the CNI 1.1 executable (ADD, DEL, CHECK, VERSION, STATUS, GC).

A runtime starts it once per container and verb, so it imports only the
standard library, the pure ``meshrouter.cni`` modules and the API's socket
client: no trio, no router, no HTTP library (goal: ADD in well under 200 ms).

Each verb is one or two requests to the local router's API, found at ``api``
(HOST:PORT) in the network configuration or, when ``addressFile`` names the
router's ``<data-dir>/addresses.json``, at the address the router published
there.  Success prints the result JSON and exits 0; a failure prints the
spec's error JSON (code, msg, details) on stdout and exits 1.  DEL never fails
for a container that is already gone or a router that is not running: the
runtime must be able to tear down whatever happened before.
"""

from __future__ import annotations

import json
import os
import sys
import time

from meshrouter.api.client import ApiClient
from meshrouter.cni.netconf import (
    ATTACHMENT_PREFIX,
    MAX_CONFIG,
    Invocation,
    NetConf,
    attachment_id,
    container_name,
    decode_config,
    is_id,
    parse_environment,
    parse_netconf,
    requested_ip,
)
from meshrouter.cni.result import (
    add_result,
    check_problem,
    dns_section,
    error_for,
    exposure_pending,
    status_problem,
)
from meshrouter.cni.spec import (
    CNI_VERSION,
    INCOMPATIBLE_VERSION,
    INVALID_ENVIRONMENT,
    INVALID_NETWORK_CONFIG,
    IO_FAILURE,
    NOT_AVAILABLE,
    TRY_AGAIN_LATER,
    UNKNOWN_CONTAINER,
    CniError,
    version_answer,
    version_tuple,
)
from meshrouter.errors import ApiError

TYPE_CHECKING = False  # typing costs ~6 ms per start; mypy reads this name as True
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, BinaryIO, TextIO

UNREACHABLE = (502, 503, 504)
EXPOSE_WAIT = 3.0  # the router's expose loop looks every second, then attaches the host
EXPOSE_POLL = 0.1


class Plugin:
    """One call: the invocation, the configuration and the router's API."""

    def __init__(self, inv: Invocation, conf: NetConf, log: TextIO) -> None:
        self.inv = inv
        self.conf = conf
        self.log = log
        self._api: ApiClient | None = None
        self.aid = attachment_id(inv.container_id, inv.ifname) if inv.container_id else ""

    @property
    def api(self) -> ApiClient:
        """The router's API client (its address is looked up at first use)."""
        if self._api is None:
            self._api = ApiClient(api_address(self.conf), timeout=self.conf.timeout)
        return self._api

    def call(self, method: str, path: str, what: str, body: dict[str, Any] | None = None,
             ) -> Any:
        try:
            return self.api.request(method, path, body)
        except ApiError as exc:
            raise error_for(exc.status, str(exc), what) from None

    # -- verbs -------------------------------------------------------------------------

    def add(self) -> dict[str, Any]:
        if not os.path.exists(self.inv.netns):
            raise CniError(INVALID_ENVIRONMENT, f"CNI_NETNS {self.inv.netns} does not exist")
        body: dict[str, Any] = {"container_id": self.aid, "netns": self.inv.netns,
                                "ifname": self.inv.ifname}
        name = container_name(self.inv)
        if name:
            body["name"] = name
        ip = requested_ip(self.inv, self.conf)
        if ip:
            body["ip"] = ip
        if self.conf.mtu is not None:
            body["mtu"] = self.conf.mtu
        attached = self.call("POST", "/attach", f"attach container {self.inv.container_id}",
                             body)
        return add_result(self.conf.cni_version, attached, self.inv.netns, self._dns())

    def _dns(self) -> dict[str, Any]:
        if self.conf.dns is not None:
            return dns_section(self.conf.dns, None)
        section = self._router_dns()
        if section is None:
            return {}  # a router without DNS: the container keeps the runtime's resolver
        if "nameservers" in section or not self._exposure_pending():
            return section
        # The first container of a fresh mesh: its attach made the address ring, and
        # the router is about to expose the host (the DNS address for containers).
        deadline = time.monotonic() + EXPOSE_WAIT
        while time.monotonic() < deadline:
            time.sleep(EXPOSE_POLL)
            section = self._router_dns() or section
            if "nameservers" in section:
                break
        else:
            print(f"meshrouter-cni: ADD {self.inv.container_id}: the router did not expose "
                  f"the host within {EXPOSE_WAIT:g} s; no DNS server in the result",
                  file=self.log)
        return section

    def _router_dns(self) -> dict[str, Any] | None:
        """The DNS section from the router's ``/status/dns`` (None: no DNS there)."""
        try:
            status = self.api.get("/status/dns")
        except ApiError:
            return None
        return dns_section(None, status if isinstance(status, dict) else None)

    def _exposure_pending(self) -> bool:
        try:
            return exposure_pending(self.api.get("/status/expose"))
        except ApiError:
            return False  # a router without the expose service

    def delete(self) -> None:
        path = f"/attach/{self.aid}"
        try:
            api = self.api
        except CniError as exc:
            if exc.code != TRY_AGAIN_LATER:
                raise
            print(f"meshrouter-cni: DEL {self.inv.container_id}: {exc.msg}; the router is "
                  "down, nothing to do", file=self.log)
            return
        try:
            api.request("DELETE", path)
        except ApiError as exc:
            if exc.status == 404:
                return  # never attached, or already detached: DEL is idempotent
            if exc.status in UNREACHABLE:
                print(f"meshrouter-cni: DEL {self.inv.container_id}: {exc} (nothing to do "
                      "while the router is down; it drops vanished namespaces when it runs)",
                      file=self.log)
                return
            raise error_for(exc.status, str(exc), f"detach {self.inv.container_id}") from None

    def check(self) -> None:
        self._needs((0, 4, 0), "CHECK")
        if not os.path.exists(self.inv.netns):
            raise CniError(INVALID_ENVIRONMENT, f"CNI_NETNS {self.inv.netns} does not exist")
        endpoint = self._local_endpoints().get(self.aid)
        problem = check_problem(self.conf.prev_result, endpoint, self.inv.container_id)
        if problem is not None:
            code = UNKNOWN_CONTAINER if endpoint is None else INVALID_NETWORK_CONFIG
            raise CniError(code, problem + "; delete and re-add the container")

    def status(self) -> None:
        self._needs((1, 1, 0), "STATUS")
        try:
            self.api.get("/status")
        except ApiError as exc:
            raise CniError(NOT_AVAILABLE, f"the meshrouter router is not ready: {exc}") from None
        except CniError as exc:  # no addresses.json: the router has not started
            raise CniError(NOT_AVAILABLE, exc.msg, exc.details) from None
        try:
            ipam = self.api.get("/status/ipam")
        except ApiError as exc:
            if exc.status != 404:
                raise CniError(NOT_AVAILABLE, f"the router's IPAM does not answer: {exc}",
                               ) from None
            ipam = None
        problem = status_problem(ipam if isinstance(ipam, dict) or ipam is None else {})
        if problem is not None:
            raise CniError(NOT_AVAILABLE, problem)

    def gc(self) -> None:
        self._needs((1, 1, 0), "GC")
        valid = self.conf.valid_attachments or ()
        keep = {attachment_id(cid, ifname) for cid, ifname in valid}
        failures = []
        for aid in sorted(self._local_endpoints()):
            if not aid.startswith(ATTACHMENT_PREFIX) or aid in keep or not is_id(aid):
                continue  # not ours, still valid, or not an ID the request line can carry
            try:
                self.api.request("DELETE", f"/attach/{aid}")
            except ApiError as exc:
                if exc.status != 404:
                    failures.append(f"{aid}: {exc}")
        if failures:
            raise CniError(IO_FAILURE, f"GC could not release {len(failures)} attachment(s)",
                           "; ".join(failures)[:4000])

    def _local_endpoints(self) -> dict[str, dict[str, Any]]:
        rows = self.call("GET", "/endpoints", "list the router's endpoints")
        if not isinstance(rows, list):
            raise CniError(IO_FAILURE, "the router's /endpoints answer is not a list")
        return {str(r["container_id"]): r for r in rows
                if isinstance(r, dict) and r.get("local") and "container_id" in r}

    def _needs(self, version: tuple[int, int, int], verb: str) -> None:
        if version_tuple(self.conf.cni_version) < version:
            raise CniError(INCOMPATIBLE_VERSION, f"{verb} needs cniVersion "
                           f"{'.'.join(map(str, version))} or later; the configuration says "
                           f"{self.conf.cni_version}")


def api_address(conf: NetConf) -> str:
    """``api``, or the address the router published in ``addressFile``."""
    if not conf.address_file:
        return conf.api
    try:
        with open(conf.address_file, "rb") as handle:
            record = json.loads(handle.read(64 * 1024))
        return str(record["api"])
    except FileNotFoundError:
        raise CniError(TRY_AGAIN_LATER, f"addressFile {conf.address_file} does not exist: "
                       "the router has not started (meshrouter launch peer --data-dir ...)",
                       ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CniError(INVALID_NETWORK_CONFIG, f"addressFile {conf.address_file} is not the "
                       "router's addresses.json", str(exc)) from None


def run(env: Mapping[str, str], stdin: BinaryIO, stdout: TextIO, stderr: TextIO) -> int:
    """One call as a runtime makes it; the exit status."""
    version = CNI_VERSION
    try:
        inv = parse_environment(env)
        data = stdin.read(MAX_CONFIG + 1)
        if inv.command == "VERSION":
            stdout.write(json.dumps(version_answer()) + "\n")
            return 0
        raw = decode_config(data)
        if isinstance(raw.get("cniVersion"), str) and len(raw["cniVersion"]) < 20:
            version = raw["cniVersion"]
        conf = parse_netconf(raw)
        plugin = Plugin(inv, conf, stderr)
        if inv.command == "ADD":
            stdout.write(json.dumps(plugin.add()) + "\n")
        elif inv.command == "DEL":
            plugin.delete()
        elif inv.command == "CHECK":
            plugin.check()
        elif inv.command == "STATUS":
            plugin.status()
        else:
            plugin.gc()
        return 0
    except CniError as exc:
        stdout.write(json.dumps(exc.to_json(version)) + "\n")
        return 1
    except OSError as exc:
        error = CniError(IO_FAILURE, f"meshrouter-cni: {exc}")
        stdout.write(json.dumps(error.to_json(version)) + "\n")
        return 1


def main() -> None:
    """Console script ``meshrouter-cni``."""
    sys.exit(run(os.environ, sys.stdin.buffer, sys.stdout, sys.stderr))


if __name__ == "__main__":
    main()
