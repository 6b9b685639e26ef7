"""`python -m common.roadmap` still works: the roadmap checker is a project tool and lives in tools/roadmap.py."""
import sys

from tools.roadmap import main

if __name__ == "__main__":
    sys.exit(main())
