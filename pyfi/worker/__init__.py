"""The worker: consumes a processor's sockets and runs its functions."""
