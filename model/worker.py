"""`python -m model.worker`: the documented command. The worker lives in model/serving/worker.py."""

import sys

from model.serving.worker import main

if __name__ == "__main__":
    sys.exit(main())
