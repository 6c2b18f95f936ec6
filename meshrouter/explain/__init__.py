"""``explain SRC DST``: which layer stops two containers from talking."""
