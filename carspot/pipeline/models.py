"""The brand model the analysis uses, swapped for a newly promoted one without a restart.

``carspot models promote`` changes the registry's current version; every worker notices within
``check_interval_s`` (a cheap file read, done between images) and loads the new version before analysing the
next image. Each stored prediction records the version that made it. A new version that fails to load is
logged and the current one stays in service.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from carspot.analysis.modes import BrandClassifier

log = logging.getLogger("carspot.pipeline.models")


class CurrentClassifier:
    """A callable returning the registry's current classifier, reloading it when the current version changes."""

    def __init__(
        self,
        *,
        load: Callable[[str], BrandClassifier],
        current_version: Callable[[], str | None],
        check_interval_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        version = current_version()
        if version is None:
            raise LookupError("the model registry has no current version")
        self._load = load
        self._current_version = current_version
        self._interval = check_interval_s
        self._monotonic = monotonic
        self._model = load(version)
        self._checked = monotonic()
        self._failed_version: str | None = None
        self._lock = threading.Lock()
        self.swaps = 0

    @property
    def version(self) -> str:
        return self._model.version

    def __call__(self) -> BrandClassifier:
        now = self._monotonic()
        if now - self._checked >= self._interval:
            with self._lock:
                self._checked = now
                self._maybe_swap()
        return self._model

    def _maybe_swap(self) -> None:
        try:
            wanted = self._current_version()
        except OSError as exc:
            log.warning("cannot read the model registry (%s); keeping %s", exc, self._model.version)
            return
        if wanted is None or wanted == self._model.version or wanted == self._failed_version:
            return
        started = time.perf_counter()
        try:
            model = self._load(wanted)
        except Exception:
            log.exception("model %s failed to load; keeping %s", wanted, self._model.version)
            self._failed_version = wanted
            return
        log.info("brand model %s -> %s (loaded in %.2fs)", self._model.version, wanted, time.perf_counter() - started)
        self._model = model
        self._failed_version = None
        self.swaps += 1
