"""What benchmarks/gpu_check.sh must show, read from a run of studies/gpu-offload.yaml: printed and as JSON.

Usage: python benchmarks/gpu_summary.py RUN_DIR OUT.json — exits 1 when an expectation is not met.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from latencylab.collect import engine, gpu


def scenario_figures(samples: pd.DataFrame) -> pd.DataFrame:
    """Per scenario: layers on the GPU, fits in VRAM, NVML peaks, decode speed and TTFT (measured requests)."""
    ok = samples[samples["ok"] & ~samples["warmup"]].copy()
    ok["decode_tok_s"] = ok["output_tokens"] / ok["eval_ms"] * 1000  # the server's own decode speed
    grouped = ok.groupby("scenario")
    return pd.DataFrame({
        "n": grouped.size(),
        "gpu_layers": grouped["gpu_layers"].agg(lambda s: sorted(s.dropna().astype(int).unique().tolist())),
        "gpu_layers_total": grouped["gpu_layers_total"].max(),
        "gpu_layers_source": grouped["gpu_layers_source"].agg(lambda s: sorted(s.dropna().unique().tolist())),
        "fits_in_vram": grouped["fits_in_vram"].agg(lambda s: sorted(s.dropna().unique().tolist())),
        "gpu_share": grouped["gpu_share"].min(),
        "gpu_mem_peak_mib": grouped["gpu_mem_used_bytes"].max() / 2**20,
        "gpu_util_peak_pct": grouped["gpu_util_pct"].max(),
        "decode_tok_s_median": grouped["decode_tok_s"].median(),
        "ttft_ms_median": grouped["ttft_ms"].median(),
    })


def expectations(figures: pd.DataFrame, samples: pd.DataFrame) -> list[dict[str, Any]]:
    """Issue 13's list: layers parsed, fits_in_vram true/false, NVML peaks above zero, partial decodes slower."""
    measured = samples[samples["ok"] & ~samples["warmup"]]
    full, partial = figures.loc["full"], figures.loc["partial"]
    checks = [
        ("gpu_layers parsed on every measured sample", bool(measured["gpu_layers"].notna().all())),
        ("full offload: fits_in_vram true", full["fits_in_vram"] == [True]),
        ("partial offload: fits_in_vram false", partial["fits_in_vram"] == [False]),
        ("NVML peak memory above zero", bool((figures["gpu_mem_peak_mib"] > 0).all())),
        ("decode speed lower for the partial offload",
         bool(partial["decode_tok_s_median"] < full["decode_tok_s_median"])),
    ]
    return [{"expectation": name, "met": met} for name, met in checks]


def main(run_dir: Path, out: Path) -> int:
    samples = pd.read_json(run_dir / "samples.jsonl", lines=True)
    figures = scenario_figures(samples)
    checks = expectations(figures, samples)
    summary = {
        "run": run_dir.name,
        "engine_backend": engine.build_backend(),
        "gpus": [dataclasses.asdict(d) for d in gpu.devices()],
        "figures": json.loads(figures.to_json(orient="index")),
        "expectations": checks,
    }
    out.write_text(json.dumps(summary, indent=1))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(figures)
    for device in summary["gpus"]:
        print(f"GPU {device['index']}: {device['name']}, {device['memory_total_bytes'] / 2**30:.1f} GiB, "
              f"driver {device['driver_version']}, CUDA {device['cuda_version']}")
    for check in checks:
        print(f"{'MET   ' if check['met'] else 'NOT MET'} {check['expectation']}")
    return 0 if all(c["met"] for c in checks) else 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
