"""Test helper program: writes its arguments (after the output path) as JSON to that path."""

import json
import sys

with open(sys.argv[1], "w", encoding="utf-8") as f:
    json.dump(sys.argv[2:], f)
