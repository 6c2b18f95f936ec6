"""Fault scenarios: a partition and its heal, crashes and restarts, churn.

Each starts with the join phase (``runner._join_phase``) and then runs its
faults as phases of their own, so that every fault's convergence time is
measured separately.  Importing this module registers them (``runner``
does, at its end); ``join`` and ``conn-limit`` stay in ``runner``, next to
the phase machinery they are the plainest use of.
"""

from __future__ import annotations

import trio

from sim.runner import Simulation, _join_phase, scenario


@scenario("partition-heal")
async def partition_heal_scenario(sim: Simulation) -> None:
    await _join_phase(sim)
    hosts = list(sim.cluster.hosts)
    sim.rng.shuffle(hosts)
    half = len(hosts) // 2
    groups = [sorted(h.ip for h in hosts[:half]), sorted(h.ip for h in hosts[half:])]

    async def split() -> None:
        sim.cluster.network.partition(groups)

    async def heal() -> None:
        sim.cluster.network.heal()

    await sim.phase("partition", split)
    await sim.phase("heal", heal)


@scenario("crash-restart")
async def crash_restart_scenario(sim: Simulation) -> None:
    await _join_phase(sim)
    live = sim.cluster.live()
    victims = sorted(sim.rng.sample(live, max(1, len(live) // 5)), key=lambda h: h.index)

    async def crash() -> None:
        for number, host in enumerate(victims):
            sim.cluster.crash(host, lose_data=number % 2 == 1)

    async def restart() -> None:
        for host in victims:
            survivors = [h for h in sim.cluster.live() if h not in victims]
            # A host that kept its data redials its persisted peers; one that lost
            # it is given fresh contacts, as an operator would.
            contacts = [] if host.storage.blobs else sim.random_contacts(survivors)
            await sim.start_host(host, contacts)
            await trio.sleep(sim.options.join_interval)

    await sim.phase("crash", crash)
    await sim.phase("restart", restart)


@scenario("churn")
async def churn_scenario(sim: Simulation) -> None:
    await _join_phase(sim)

    async def churn() -> None:
        end = trio.current_time() + sim.options.duration
        while trio.current_time() < end:
            live = sim.cluster.live()
            dead = [h for h in sim.cluster.hosts if not h.alive]
            if len(live) > 2 and (not dead or sim.rng.random() < 0.5):
                sim.cluster.crash(sim.rng.choice(live), lose_data=sim.rng.random() < 0.3)
            elif dead:
                host = sim.rng.choice(dead)
                contacts = [] if host.storage.blobs else sim.random_contacts(live)
                await sim.start_host(host, contacts)
            await trio.sleep(1.0)
        # Bring everyone back for the final convergence.
        for host in [h for h in sim.cluster.hosts if not h.alive]:
            contacts = [] if host.storage.blobs else sim.random_contacts(sim.cluster.live())
            await sim.start_host(host, contacts)

    await sim.phase("churn", churn)
