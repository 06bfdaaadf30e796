"""Pure functions of samples: tables, targets, comparisons, diagnosis, the findings of a report. No network,
no NVML, no subprocess."""
