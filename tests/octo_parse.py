"""A plugin's own small M115 parser (what the seed's read-M115 example does inline)."""

import re

_KEY = re.compile(r"(?:^|\s)([A-Z][A-Z0-9_]*):")


def parse_m115(line):
    keys = list(_KEY.finditer(line))
    return {m.group(1): line[m.end():keys[i + 1].start() if i + 1 < len(keys) else None].strip()
            for i, m in enumerate(keys)}
