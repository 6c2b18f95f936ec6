"""The CNI 1.1 plugin ``meshrouter-cni``: container runtimes reach the mesh through it.

A runtime starts the plugin once per container and verb; the plugin asks the
local router's API (``POST /attach``, ``DELETE /attach/{id}``, ``GET
/endpoints``, ``/status``, ``/status/ipam``, ``/status/dns``) and answers on
stdout in the spec's JSON.  ``spec`` (codes, versions), ``netconf`` (the
environment and the network configuration) and ``result`` (answers and error
mapping) are pure; ``plugin`` is the one module that does I/O.
"""
