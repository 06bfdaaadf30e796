"""The bottom layer: errors, paths, the sample and its clock, durations, timeouts, protocols, GGUF. Imports
nothing else of latencylab."""
