"""Runs on disk, the contract between collecting and analysing: run.json, samples.jsonl, check.json,
facts.json, baselines from CSV."""
