"""@ command hook handlers in OctoPrint's style (seed 002: atcommand.<phase>)."""

calls = []


def record_at(comm_instance, phase, command, parameters, tags=None, *args, **kwargs):
    calls.append((phase, command, parameters, frozenset(tags or ())))
