"""latencylab: measure, explain and document the latency of LLM servers."""


def __getattr__(name: str) -> str:
    """`__version__`, read from the installed metadata when asked: importlib.metadata takes tens of ms, and every
    `latencylab` command imports this package before it can answer or be interrupted cleanly."""
    if name != "__version__":
        raise AttributeError(f"module 'latencylab' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("latencylab")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "0.0.0+unknown"
