"""Entry point for `python -m contract_tests`; `main` is re-exported for `agnes contract check`."""

import sys

from contract_tests.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
