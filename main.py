"""ferry's entry point: `python main.py run|build|drain|replay|validate|serve` (app/edges/cli.py).

Exit codes: 0 success; 1 retriable failure (run again); 2 terminal failure (fix the config or
the data first; FERRY_TERMINAL_EXIT_CODE overrides).
"""

import sys

from app.edges.cli import main

if __name__ == "__main__":
    sys.exit(main())
