"""`python -m pipeline.app.cli`: the same as the `printpipe` command."""

import sys

from pipeline.app.cli.main import main

sys.exit(main())
