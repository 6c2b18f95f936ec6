"""A small OpenFlow 1.4 codec (sans-IO) for the flow_mods and bundles the router sends."""
