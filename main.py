"""The image's entry point, the same code as the `ferry` command (app/edges/cli.py):
`python main.py run|load|init|build|drain|replay|validate|schema|gc|serve` (`--help`).

Exit codes: 0 success; 1 retriable failure (run again); 2 terminal failure (fix the config or
the data first; FERRY_TERMINAL_EXIT_CODE overrides).
"""

import sys

from app.edges.cli import main

if __name__ == "__main__":
    sys.exit(main())
