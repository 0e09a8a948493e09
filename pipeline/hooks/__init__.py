"""The stage contract: the chain that runs a phase's stages, the registry that builds them
from specs, the G-code script templates and the script and file phase contracts.

May import: the root modules, `events` and `config`. No trio, no IO (the script loader reads
template files once, at load).
"""
