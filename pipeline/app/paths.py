"""Where the service keeps things: paths of the config resolved against the config file's
folder (`storage.folder`, `storage.state`)."""

from __future__ import annotations

import os

from pipeline.config.reader import HostConfig


def config_relative(config: HostConfig, path: str) -> str:
    """`path` with ~ expanded, relative to the config file's folder."""
    path = os.path.expanduser(path)
    if not os.path.isabs(path) and os.path.exists(config.path):
        path = os.path.join(os.path.dirname(os.path.abspath(config.path)), path)
    return os.path.abspath(path)


def state_folder(config: HostConfig) -> str:
    return config_relative(config, config.storage.state)
