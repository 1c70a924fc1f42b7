"""`python -m bench 1k 100k`: see bench/run.py."""

from bench.run import main

raise SystemExit(main())
