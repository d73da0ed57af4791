import pytest
from indexed_year import play


@pytest.fixture(scope="module")
def year():
    """(year, manifest) of the demo's year, played once per module."""
    return play()
