"""``python -m bench.zoo``: the model zoo command (see bench/zoo/run.py)."""
import sys

from bench.zoo.run import main

sys.exit(main())
