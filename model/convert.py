"""`python -m model.convert SRC DST`: the documented command. The converter lives in model/release/convert.py."""

import sys

from model.release.convert import main

if __name__ == "__main__":
    sys.exit(main())
