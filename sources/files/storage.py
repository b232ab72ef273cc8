"""The Cloud Storage client, built once per run and only when a run touches gs://."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from core.settings import Settings


def storage_client_factory(settings: Settings) -> Callable[[], Any]:
    @cache
    def build() -> Any:
        from google.cloud import storage

        if settings.storage_emulator_host:
            from google.auth.credentials import AnonymousCredentials

            return storage.Client(
                project=settings.gcs_project or "local", credentials=AnonymousCredentials()
            )
        return storage.Client(project=settings.gcs_project)

    return build
