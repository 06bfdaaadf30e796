"""Talking to servers: backends (one per protocol), the servers latencylab starts, the runner, fact gathering,
the GPU through NVML."""
