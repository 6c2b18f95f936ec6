"""Convergence plot: fraction of peers agreeing over simulated time, per phase."""

from __future__ import annotations

from pathlib import Path

from sim.runner import SimResult


def plot_convergence(result: SimResult, path: Path) -> None:
    """Write a PNG with one line per phase and the phase boundaries marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for phase in result.phases:
        if not phase.series:
            continue
        times = [t for t, _ in phase.series]
        fractions = [f for _, f in phase.series]
        label = phase.name
        if phase.convergence_time is not None:
            label += f" (converged in {phase.convergence_time:.2f}s)"
        else:
            label += " (did not converge)"
        ax.step(times, fractions, where="post", label=label)
        ax.axvline(phase.started, color="grey", linestyle=":", linewidth=0.8)
        if phase.action_done is not None:
            ax.axvline(phase.action_done, color="grey", linestyle="--", linewidth=0.8)
    opts = result.options
    ax.set_title(
        f"{opts.scenario}: {opts.peers} peers, seed {opts.seed}, "
        f"latency {opts.latency * 1000:g} ms, "
        f"loss {opts.loss:g}, conn limit {opts.conn_limit}"
    )
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("fraction of live peers agreeing")
    ax.set_ylim(-0.02, 1.05)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
