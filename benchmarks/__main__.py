"""``python -m benchmarks``: srcgrad side by side with its peers (see `benchmarks.run`)."""

import sys

from benchmarks.run import main

sys.exit(main())
