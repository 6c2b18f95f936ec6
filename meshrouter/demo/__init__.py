"""``meshrouter demo``: a 3-host mesh in network namespaces, built, shown and removed.

``lab.py`` makes and removes the namespaces, routers and containers;
``sweep.py`` removes what an earlier, killed run left; ``scenario.py`` is what
the demo builds and checks through the real CLI; ``dnsprobe.py`` runs inside a
container to show DNS load balancing; ``forward.py`` lets a browser here reach
a router's API inside its namespace; ``preflight.py`` says what is missing.
A trio-free shell of subprocesses (like the CLI's client verbs): it only runs
``ip``, ``nft`` and ``meshrouter`` itself.
"""
