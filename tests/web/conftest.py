import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "index"))

from indexed_year import fresh_web3, play  # noqa: E402


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """The demo's year, played once and indexed into SQLite: (year, manifest, db path)."""
    from gpucredit.audit.export import Manifest
    from gpucredit.index.follower import Indexer, engine_for

    year, manifest = play()
    db = str(tmp_path_factory.mktemp("web") / "index.sqlite")
    Indexer(fresh_web3(), Manifest.from_dict(manifest), engine_for(db)).sync()
    return year, manifest, db
