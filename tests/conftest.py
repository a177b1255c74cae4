"""Every test gets its own nnfc cache (profiles of this machine): nothing leaks between tests
or into the user's real cache."""

import pytest


@pytest.fixture(autouse=True)
def _own_nnfc_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("NNFC_CACHE_DIR", str(tmp_path_factory.mktemp("nnfc-cache")))
