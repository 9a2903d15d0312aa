"""Regenerate the report of a Hydra multirun sweep and print its summary.

Usage::

    python scripts/report.py outputs/multirun/2026-11-22_10-00-00 --metrics test/acc test/loss
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from trainlab.report import configured_report, write_report


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", help="multirun dir (hydra.sweep.dir) holding the job dirs")
    parser.add_argument(
        "--metrics", nargs="+", default=None,
        help="result keys to report (default: those the sweep's config chose, else key metrics)",
    )
    parser.add_argument(
        "--option-keys",
        nargs="+",
        default=None,
        help="override keys that define an option (default: the sweep's config, else those "
        "that vary, minus seed)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Write the report files into the sweep dir and print summary.md."""
    args = parse_args(argv)
    configured = configured_report(args.sweep_dir)
    metrics = args.metrics or configured["metrics"]
    option_keys = args.option_keys or configured["option_keys"]
    try:
        files = write_report(args.sweep_dir, metrics=metrics, option_keys=option_keys)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"report.py: {exc}") from exc
    print(files["summary.md"].read_text())
    print("Wrote " + ", ".join(str(path) for path in files.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
