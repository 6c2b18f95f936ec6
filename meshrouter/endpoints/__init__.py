"""Endpoints: which container (ID, MAC, IP, name) sits on which peer.

``model`` is one entry, ``state`` the mergeable set gossiped on the
``endpoints`` channel, ``table`` one router's replica with its owner-only
edits and digests, ``gossiper`` the channel adapter, ``service`` the trio
Service that attaches containers and programs the datapath.
"""
