"""Topic queries as subscribers type them: words, phrases, exclusions, accents, case."""

from __future__ import annotations

import unicodedata

from digestd.ranking.textsearch import fold, parse_query, tokenize


def test_words_phrases_and_exclusions_are_parsed() -> None:
    q = parse_query('mechanistic "Attention Heads" -safety -"red teaming" multi-task')
    assert [c.label for c in q.include] == ["mechanistic", "Attention Heads", "multi-task"]
    assert [c.phrase for c in q.include] == [False, True, True]
    assert [c.label for c in q.exclude] == ["safety", "red teaming"]
    assert q.include[1].tokens == ("attent", "head")


def test_accents_case_and_stems_fold_together() -> None:
    assert fold("Étude RAGNARÖK") == "etude ragnarok"


def test_plain_ascii_folds_as_the_full_unicode_path_does() -> None:
    """ASCII text takes a shortcut (case folding alone): the same as NFKD and the marks."""
    every = "".join(map(chr, range(128)))
    slow = "".join(
        ch for ch in unicodedata.normalize("NFKD", every) if not unicodedata.combining(ch)
    )
    assert fold(every) == slow.casefold() == every.lower()
    assert tokenize("Caching CACHES cached") == ["cach", "cach", "cach"]
    assert parse_query("ÉTUDE").include[0].tokens == parse_query("etude").include[0].tokens


def test_degenerate_queries_never_raise() -> None:
    assert parse_query("").is_empty
    assert parse_query('  "" - -"" the of ').is_empty
    q = parse_query('"unclosed phrase here')
    assert [c.label for c in q.include] == ["unclosed phrase here"]
    assert (
        parse_query("kv KV Kv").include[0].tokens == ("kv",)
        and len(parse_query("kv KV").include) == 1
    )
