"""printpipe's core package. The tree is the architecture: one subpackage per layer, and a
layer imports only the layers below it (tests/test_layering.py enforces it).

    errors, gcode, phases   values everything shares (pure)
    wire                    G-code read as the firmware reads it; its canonical form (pure)
    events/                 event names and placeholders (pure)
    config/                 YAML text -> frozen specs (pure)
    protocol/               the sans-IO serial protocol engine (pure)
    hooks/                  the stage contract: chain, registry, scripts, hook phases (pure)
    session/                the host core: queues, jobs, rules, reactions, states (pure)
    virtual/                the virtual printer's firmware model, and the in-memory Pair (pure)
    files/                  storage, index and analysis of printable files (IO)
    fanout/                 the event bus and the config subscriptions (trio)
    link/                   transport, serial link, printer session, the pty server (trio)
    app/                    the edges: service, control surface, CLI, HTTP API

This module itself imports nothing: stages and handlers import what they use from
`pipeline.gcode`, `pipeline.phases`, `pipeline.errors` and the pure layers.
"""
