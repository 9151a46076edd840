"""Author names as readers type them and feeds spell them: one person matches, another not."""

from __future__ import annotations

import pytest

from digestd.ranking.authors import AuthorName, AuthorSet, dedupe, key, parse, without

# (a follow as a reader types it, an author as a feed spells it, the same person?)
MATCHES = [
    ("Yann LeCun", "Yann LeCun", True),
    ("Yann LeCun", "yann lecun", True),
    ("Yann LeCun", "Y. LeCun", True),
    ("Yann LeCun", "Y.LeCun", True),
    ("Yann LeCun", "LeCun, Yann", True),
    ("Yann LeCun", "LeCun Y.", True),
    ("Yann LeCun", "Yann A. LeCun", True),
    ("Yann LeCun", "Yann André LeCun", True),
    ("Yann LeCun", "Yann Le Cun", True),
    ("LeCun, Yann", "Y. A. LeCun", True),
    ("Y. LeCun", "Yves LeCun", True),  # an initial is all the reader gave
    ("LeCun", "Yves LeCun", True),  # a last name alone follows every LeCun
    ("Yann LeCun", "Yves LeCun", False),
    ("Yann LeCun", "Y. Bengio", False),
    ("Yann LeCun", "Yann", False),
    ("Percy Liang", "P. Liang", True),
    ("Percy Liang", "Paul Liang", False),
    ("Jürgen Schmidhuber", "Jurgen Schmidhuber", True),
    ("Søren Hauberg", "Soren Hauberg", True),
    ("Łukasz Kaiser", "Lukasz Kaiser", True),
    ("Łukasz Kaiser", "L. Kaiser", True),
    ("Jean-Pierre Sartre", "J.-P. Sartre", True),
    ("Laurens van der Maaten", "L. van der Maaten", True),
    ("Laurens van der Maaten", "van der Maaten, Laurens", True),
    ("Quoc V. Le", "Le, Quoc", True),
    ("Quoc V. Le", "Q. Le", True),
    ("Martin Luther King, Jr.", "Martin L. King", True),
    ("Yann LeCun", "", False),
    ("", "Yann LeCun", False),
]


@pytest.mark.parametrize(("follow", "author", "same"), MATCHES)
def test_a_follow_matches_the_spellings_of_its_author_only(
    follow: str, author: str, same: bool
) -> None:
    assert (AuthorSet([follow]).first_match([author]) == follow) is same


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("Yann LeCun", AuthorName("lecun", "yann")),
        ("  LeCun,   Yann A. ", AuthorName("lecun", "yann")),
        ("Y. LeCun", AuthorName("lecun", "y")),
        ("LeCun", AuthorName("lecun")),
        ("Élodie Château", AuthorName("chateau", "elodie")),
        ("Ada Lovelace et al.", AuthorName("lovelace", "ada")),
        ("et al.", AuthorName("")),
        ("—", AuthorName("")),
    ],
)
def test_names_parse_to_last_and_first(raw: str, parsed: AuthorName) -> None:
    assert parse(raw) == parsed


def test_the_key_is_last_name_and_initial() -> None:
    assert key("Yann LeCun") == key("LeCun, Y.") == key("Yves LeCun") == ("lecun", "y")


def test_the_readers_spelling_is_what_a_match_names() -> None:
    follows = AuthorSet(["Percy Liang", "LeCun, Yann"])
    assert follows.first_match(["A. Author", "Y. LeCun", "P. Liang"]) == "LeCun, Yann"
    assert follows.first_match(["A. Author"]) is None
    assert not AuthorSet([]) and not AuthorSet(["  ", "--"])


def test_lists_keep_each_name_once_and_drop_by_person() -> None:
    assert dedupe(["Yann  LeCun", "LeCun, Yann", "Y. LeCun", " ", "Percy Liang"]) == [
        "Yann LeCun",
        "Y. LeCun",
        "Percy Liang",
    ]
    assert without(["Yann LeCun", "Percy Liang"], ["lecun, yann"]) == ["Percy Liang"]
