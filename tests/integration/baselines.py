"""The set-ups meshrouter's datapath is compared against (bench/datapath_throughput.py).

* ``kernel_lab``: kernel VXLAN + Linux bridge per host (ovs-lab
  05_kernel_baseline.sh, the Flannel-style baseline), containers with default
  offloads;
* ``control_lab``: ovs-lab's hand-made OVS (02_ovs_start.sh + 03_overlay.sh:
  its daemons, bridges, ``ethtool -K eth0 tx off`` containers and flows), every
  port AF_XDP non-PMD generic, so a bench can measure the lab's own figure in
  the same run as the product's.

Both live in a ``Lab`` (unique names; ``Lab.close`` removes everything: the
hand-started daemons' pidfiles are under the host's ``ovs/run``, where
``netlab.run_pidfiles`` looks).
"""

from __future__ import annotations

from meshrouter.dataplane.core.pipeline import TUNNEL_PORT
from meshrouter.dataplane.ovs import flowsync
from meshrouter.dataplane.ovs.daemons import priority_prefix, set_group_nice
from tests.integration.flows import lab_flows
from tests.integration.lab import Container, Host, Lab, sh


def kernel_lab(lab: Lab, mtu: int) -> tuple[list[Host], list[Container]]:
    """Two hosts with kernel VXLAN + Linux bridge over ``ul0`` (ovs-lab 05), a
    container each at ``mtu`` less the VXLAN overhead, default offloads."""
    hosts = [lab.add_host(mtu=mtu), lab.add_host(mtu=mtu)]
    containers = []
    inner = str(mtu - 50)
    for h in hosts:
        c = lab.add_container(h)
        containers.append(c)
        sh("ip", "-n", h.ns, "link", "add", "vxlan0", "type", "vxlan", "id", "4242",
           "dstport", "4789", "local", h.ip, "dev", "ul0", "nolearning")
        sh("ip", "-n", h.ns, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", h.ns, "link", "set", "vxlan0", "master", "br0", "up")
        sh("ip", "link", "add", "eth0", "netns", c.ns, "mtu", inner, "type", "veth",
           "peer", "name", "c-p", "netns", h.ns, "mtu", inner)
        sh("ip", "-n", h.ns, "link", "set", "c-p", "master", "br0", "up")
        sh("ip", "-n", h.ns, "link", "set", "br0", "up")
        sh("ip", "-n", c.ns, "addr", "add", f"{c.ip}/16", "dev", "eth0")
        sh("ip", "-n", c.ns, "link", "set", "eth0", "up")
    for h, other in ((hosts[0], hosts[1]), (hosts[1], hosts[0])):
        sh("ip", "netns", "exec", h.ns, "bridge", "fdb", "append", "00:00:00:00:00:00",
           "dev", "vxlan0", "dst", other.ip)
    return hosts, containers


def control_lab(lab: Lab) -> tuple[list[Host], list[Container]]:
    """ovs-lab 02 + 03 by hand in two of our hosts: its daemons, bridges, containers
    (``ethtool -K eth0 tx off``) and flows, every port AF_XDP non-PMD generic;
    vswitchd at the product's priority (nice -10), so the row compares set-ups."""
    hosts = [lab.add_host(), lab.add_host()]
    containers = [lab.add_container(h) for h in hosts]
    xdp = ["type=afxdp-nonpmd", "options:xdp-mode=generic"]
    for h in hosts:
        d = h.base / "ovs"
        for sub in ("run", "db", "log", "etc"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        env = ["env", f"OVS_RUNDIR={d}/run", f"OVS_DBDIR={d}/db", f"OVS_LOGDIR={d}/log",
               f"OVS_SYSCONFDIR={d}/etc"]
        sh("ovsdb-tool", "create", f"{d}/db/conf.db", "/usr/share/openvswitch/vswitch.ovsschema")
        sh("ip", "netns", "exec", h.ns, *env, "ovsdb-server", f"{d}/db/conf.db",
           f"--remote=punix:{d}/run/db.sock", f"--pidfile={d}/run/ovsdb-server.pid",
           "--detach", f"--log-file={d}/log/ovsdb-server.log",
           f"--unixctl={d}/run/ovsdb-server.ctl")
        h.ovs("ovs-vsctl", "--no-wait", "init")
        h.ovs("ovs-vsctl", "--no-wait", "set", "Open_vSwitch", ".",
              "other_config:n-handler-threads=1", "other_config:n-revalidator-threads=1")
        sh("ip", "netns", "exec", h.ns, *env, *priority_prefix(-10), "ovs-vswitchd",
           f"unix:{d}/run/db.sock", f"--pidfile={d}/run/ovs-vswitchd.pid", "--detach",
           f"--log-file={d}/log/ovs-vswitchd.log")
        set_group_nice(h.pid("ovs-vswitchd") or 0, -10)  # the product's priority
        h.ovs("ovs-vsctl", "--", "add-br", "br-phy", "--", "set", "bridge", "br-phy",
              "datapath_type=netdev", "--", "add-port", "br-phy", "ul0",
              "--", "set", "interface", "ul0", *xdp,
              "--", "add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev",
              "fail_mode=secure", "protocols=OpenFlow10,OpenFlow13,OpenFlow14,OpenFlow15",
              "--", "add-port", "br-int", "vxlan0", "--", "set", "interface", "vxlan0",
              "type=vxlan", f"ofport_request={TUNNEL_PORT}", "options:remote_ip=flow",
              "options:key=flow")
        sh("ip", "-n", h.ns, "addr", "del", f"{h.ip}/24", "dev", "ul0")
        sh("ip", "-n", h.ns, "link", "set", "br-phy", "up")
        sh("ip", "-n", h.ns, "addr", "add", f"{h.ip}/24", "dev", "br-phy")
        for c in h.containers:
            sh("ip", "link", "add", "eth0", "netns", c.ns, "address", c.mac, "mtu", "1450",
               "type", "veth", "peer", "name", f"{c.name}-p", "netns", h.ns, "mtu", "1450")
            sh("ip", "-n", c.ns, "addr", "add", f"{c.ip}/16", "dev", "eth0")
            sh("ip", "-n", c.ns, "link", "set", "eth0", "up")
            sh("ip", "-n", h.ns, "link", "set", f"{c.name}-p", "up")
            sh("ip", "netns", "exec", c.ns, "ethtool", "-K", "eth0", "tx", "off")
            h.ovs("ovs-vsctl", "add-port", "br-int", f"{c.name}-p", "--", "set", "interface",
                  f"{c.name}-p", "ofport_request=2", *xdp)
    for h in hosts:
        table = flowsync.desired_table(lab_flows(h, containers, {c.name: 2 for c in h.containers}))
        path = h.base / "flows.txt"
        path.write_text("\n".join(table.values()) + "\n")
        h.ovs("ovs-ofctl", "-O", "OpenFlow13", "--bundle", "replace-flows", "br-int", str(path))
    for a in hosts:
        for b in hosts:
            if a is not b:  # warm OVS's tunnel neighbour cache (NOTES P3)
                a.exec("ping", "-c1", "-W1", b.ip, check=False)
    return hosts, containers
