"""The Open vSwitch driver shell: ``OvsDatapath`` and its settings."""

from meshrouter.dataplane.ovs.datapath import OvsDatapath
from meshrouter.dataplane.ovs.settings import OvsSettings

__all__ = ["OvsDatapath", "OvsSettings"]
