"""The HTTP API's part of a config reload: the settings it applies at once, registered on the
control's `Reloader` (app/reload.py) when `printpipe serve` builds the API.

- `http.api_key`: the new key is accepted and the old one refused from the next request on
  (application keys are read from keys.json on every change anyway). Without a configured key
  the stored one serves again, or a new one is made, stored and logged once.
- `http.host_names` and `http.body_limit`: the guards in front of every endpoint.
- `storage.folder`: listings, uploads and new selections use the new folder at once; a print
  already running, or the file already selected, stays where it is. The pipeline's file-type
  stages and the printer profile (analysis) refresh the storage too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs

from pipeline.app.http.app import Guards
from pipeline.app.http.context import Api
from pipeline.app.keys import redact
from pipeline.config.reader import HostConfig
from pipeline.errors import ConfigError
from pipeline.files.storage import LocalStorage

log = logging.getLogger("printpipe.http")


def register_live(api: Api, folder_of: Callable[[HostConfig, str], str]) -> None:
    """Register the API's live settings on `api.control.reloader`; `folder_of(config, path)`
    resolves a configured folder (relative to the config file)."""
    reloader = api.control.reloader
    guards: Guards = api.extra["guards"]

    def api_key(old: HostConfig, new: HostConfig) -> None:
        api.keys.configured_key = new.http.api_key
        if api.anonymous:
            return
        key, created = api.keys.ensure_master()
        if created:
            log.warning("http.api_key was removed: a new API key %s was generated and stored "
                        "in %s; `sudo printpipe keys show` prints it", redact(key), api.keys.path)
        else:
            log.warning("reload: the API key is now %s", redact(key))

    def storage(old: HostConfig, new: HostConfig) -> None:
        root = folder_of(new, new.storage.folder)
        try:
            fresh = LocalStorage(root, api.control.pipeline,
                                 attrs.asdict(new.printer.profile))
        except OSError as exc:
            raise ConfigError(f"storage.folder {root}: {exc.strerror or exc}") from None
        api.storage = fresh
        api.extra.pop("files", None)  # the metadata index and analyses of the old folder

    reloader.live("http.api_key", api_key)
    reloader.live("http.host_names",
                  lambda old, new: guards.host_check.set_names(new.http.host_names))
    reloader.live("http.body_limit",
                  lambda old, new: setattr(guards.body_limit, "limit", new.http.body_limit))
    for prefix in ("storage.folder", "pipeline", "printer.profile"):
        reloader.live(prefix, storage)
