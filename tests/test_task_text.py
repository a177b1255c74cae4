"""Tasks as a person writes them resolve to the default factory's attributes (colour names by
CIEDE2000 nearest colour, category plurals and synonyms from the AttrOD family); words that
resolve to nothing are one error naming the nearest words."""

import pytest

from nnfc.bundle import read_bundle
from nnfc.colour_names import ciede2000
from nnfc.errors import NnfcError
from nnfc.factories import known_factories
from nnfc.task_text import family_words, resolve


@pytest.fixture(scope="module")
def vocab():
    bundle = read_bundle(known_factories()["default"], verify_hashes=False)
    words, palette = family_words(bundle.manifest)
    return bundle.attributes, words, palette


RESOLVED = [
    ("red,car", ["red", "car"]),                       # the exact list, as before
    ("car,red", ["red", "car"]),                       # any order
    ("crimson cars", ["red", "car"]),                  # colour name -> nearest colour
    ("people in white", ["white", "person"]),          # synonym + filler word
    ("red or blue cars", ["red", "blue", "car"]),      # "or"
    ("Scarlet Buses", ["red", "bus"]),                 # case, plural -es
    ("navy blue bikes", ["blue", "bicycle"]),          # a basic colour word inside a name
    ("dark green motorbikes", ["green", "motorcycle"]),
    ("emerald bus", ["green", "bus"]),
    ("golden motorcycles", ["yellow", "motorcycle"]),
    ("charcoal cars", ["black", "car"]),
    ("pedestrians wearing black", ["black", "person"]),
    ("women in purple", ["purple", "person"]),
    ("orange and yellow bicycles", ["orange", "yellow", "bicycle"]),
    ("vermillion automobiles", ["red", "car"]),
    ("snow white coaches", ["white", "bus"]),
    ("sky blue sedans", ["blue", "car"]),
    ("amber mopeds", ["orange", "motorcycle"]),
    ("the cars that are indigo", ["purple", "car"]),
    ("red, blue, car", ["red", "blue", "car"]),
]


@pytest.mark.parametrize("text,expected", RESOLVED)
def test_phrasings_resolve(vocab, text, expected):
    attributes, words, palette = vocab
    r = resolve(text, attributes, words, palette)
    assert r.attributes == expected, r.describe()
    assert r.exact == (text in ("red,car", "car,red", "red, blue, car"))


REFUSED = [
    ("grey cars", "not close to any colour"),          # between white and black: neither
    ("teal buses", "not close to any colour"),
    ("red trucks", "'trucks'"),                        # no such category
    ("crimsen cars", "nearest words: .*crimson"),        # a typo gets the word it meant
    ("", "names no attribute"),
]


@pytest.mark.parametrize("text,message", REFUSED)
def test_unresolvable_phrases_say_why(vocab, text, message):
    attributes, words, palette = vocab
    with pytest.raises(NnfcError, match=message) as exc:
        resolve(text, attributes, words, palette)
    assert "\n" not in str(exc.value)


def test_unknown_word_lists_nearest_words(vocab):
    attributes, words, palette = vocab
    with pytest.raises(NnfcError) as exc:
        resolve("red bycicles", attributes, words, palette)
    assert "nearest words: bicycle" in str(exc.value)


def test_ciede2000_reference_pairs():
    """Sharma, Wu & Dalal (2005) test data, pairs 1, 2 and 17."""
    assert ciede2000([50, 2.6772, -79.7751], [50, 0, -82.7485]) == pytest.approx(2.0425, abs=1e-4)
    assert ciede2000([50, 3.1571, -77.2803], [50, 0, -82.7485]) == pytest.approx(2.8615, abs=1e-4)
    assert ciede2000([50, 2.5, 0], [73, 25, -18]) == pytest.approx(27.1492, abs=1e-4)
