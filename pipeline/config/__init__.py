"""The configuration: YAML text -> frozen specs, every problem a ConfigError with file:line.

May import: the root modules and `events` (subscriptions name events). No trio, no IO
(`load_config_file` reads one file). Never imports `stages`: stage schemas are passed in.
"""
