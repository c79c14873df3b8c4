import pytest


@pytest.fixture(autouse=True)
def empty_cache():
    """Every unit test starts with an empty cache: API throttles and the password-reset limit
    count from zero. (The unit tests' cache is in memory; integration tests share Redis with
    the broker and must not flush it.)"""
    from django.core.cache import cache

    cache.clear()
