"""python training/run.py --config training/configs/stage1.yaml [--key value ...]

Also under `accelerate launch` (see docs/training.md): every process runs this same file.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

# Runnable as a plain script from a checkout without `pip install -e .`: the repository root holds `model`
# and `training`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.config import ConfigError, parse_args  # noqa: E402  (needs the path above)


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_args(argv)  # every problem at once, before torch or any model is loaded
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    log_file = Path(cfg.output_dir) / "train.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    console = logging.StreamHandler()
    console.setLevel(logging.INFO)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=[console, logging.FileHandler(log_file)])
    from training.loop import train  # heavy imports only once the config is known to be good

    try:
        result = train(cfg)
    except (ValueError, FileNotFoundError) as exc:  # bad data or an unusable checkpoint: one line for people
        console.setLevel(logging.CRITICAL)  # the traceback goes to the log file only
        logging.getLogger("training").error("training failed", exc_info=True)
        print(f"error: {exc} (details in {log_file})", file=sys.stderr)
        return 1
    if result.main_process:  # every process of a launch runs this file; one of them reports
        print(f"done: step {result.step}, checkpoint {result.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
