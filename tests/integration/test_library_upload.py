"""The preference center's library upload (issue 26): the same import as the CLI, behind the
page's form token, the body capped before it is read; what was imported is said on the
page, its frequent authors offered with a button. On SQLite and PostgreSQL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from digestd.core.db import session_scope
from digestd.core.models import Entry, LibraryPaper
from tests.integration.test_web_links import form_headers, make
from tests.support.web import WebHarness, link_for, subscriber
from tests.support.web import web_fixture as web_fixture  # the `web` fixture

IDS = b"2310.06825\n2501.00001\n10.1145/nowhere\n"
LIBRARY = Path(__file__).parents[1] / "fixtures" / "library" / "interpretability.bib"


def library_size(web: WebHarness) -> int:
    with session_scope(web.ctx.engine) as s:
        return int(s.execute(select(func.count()).select_from(LibraryPaper)).scalar_one())


def upload(path: str) -> str:
    return path + "/library"


@pytest.mark.backend  # the library's bulk insert on PostgreSQL
async def test_uploading_a_bibtex_library_says_what_shapes_the_digests(web: WebHarness) -> None:
    sub = make(web)
    path = link_for(web.ctx, "preferences", sub)
    token = {"csrf_token": web.form_token("preferences")}
    async with web.client() as client:
        page = await client.get(path)
        # The form posts to the page's own (freshly signed) link: the token may differ.
        form = r'action="/preferences/[^"/]+/library" enctype="multipart/form-data"'
        assert re.search(form, page.text)
        assert 'type="file"' in page.text
        done = await client.post(
            upload(path),
            data={**token, "action": "import"},
            files={"library": ("My Library.bib", LIBRARY.read_bytes(), "application/x-bibtex")},
            headers=form_headers(),
        )
        assert done.status_code == 200, done.text
        assert "20 papers from your library will shape your next digests." in done.text
        assert "Frequent authors in your library: <strong>Neel Nanda; Chris Olah;" in done.text
        assert library_size(web) == 20
        # The offered authors, one button away.
        followed = await client.post(
            upload(path),
            data={**token, "action": "follow", "authors": "Neel Nanda; Chris Olah"},
            headers=form_headers(),
        )
        assert "You now follow Neel Nanda, Chris Olah." in followed.text
        assert "20 papers from your library shape your digests" in followed.text
        removed = await client.post(
            upload(path), data={**token, "action": "remove"}, headers=form_headers()
        )
        assert "Your library is removed (20 papers)." in removed.text
    after = subscriber(web.ctx, sub.email)
    assert after is not None and after.follows == ["Neel Nanda", "Chris Olah"]
    assert library_size(web) == 0


async def test_ids_not_found_are_counted_on_the_page(web: WebHarness) -> None:
    sub = make(web)
    now = web.ctx.now()
    with session_scope(web.ctx.engine) as s:
        s.add(
            Entry(
                canonical_key="arxiv:2310.06825",
                url="https://arxiv.org/abs/2310.06825",
                title="Mistral 7B",
                published_at=now,
                ingested_at=now,
            )
        )
    path = link_for(web.ctx, "preferences", sub)
    async with web.client() as client:
        done = await client.post(
            upload(path),
            data={"csrf_token": web.form_token("preferences")},
            files={"library": ("ids.txt", IDS, "text/plain")},
            headers=form_headers(),
        )
    assert done.status_code == 200
    assert "1 paper from your library will shape your next digests; 2 ids not found." in done.text


async def test_bad_or_foreign_uploads_store_nothing(web: WebHarness) -> None:
    sub = make(web)
    path = link_for(web.ctx, "preferences", sub)
    token = {"csrf_token": web.form_token("preferences")}
    broken = b"@article{ok, title={Fine}}\n@article{bad, title={Never closed}\n"
    async with web.client() as client:
        malformed = await client.post(
            upload(path),
            data=token,
            files={"library": ("broken.bib", broken, "text/plain")},
            headers=form_headers(),
        )
        empty = await client.post(
            upload(path),
            data=token,
            files={"library": ("none.bib", b"", "text/plain")},
            headers=form_headers(),
        )
        no_token = await client.post(
            upload(path),
            data={"csrf_token": "forged"},
            files={"library": ("l.bib", LIBRARY.read_bytes(), "text/plain")},
            headers=form_headers(),
        )
        cross_site = await client.post(
            upload(path),
            data=token,
            files={"library": ("l.bib", LIBRARY.read_bytes(), "text/plain")},
            headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        )
        # Over the cap: refused by its Content-Length, before a byte of it is read.
        huge = await client.post(
            upload(path),
            content=b"x" * (6 * 1024 * 1024),
            headers={**form_headers(), "Content-Type": "multipart/form-data; boundary=b"},
        )
    assert malformed.status_code == 422
    assert "Line 2: a BibTeX entry is malformed" in malformed.text
    assert 'id="library-error"' in malformed.text
    assert empty.status_code == 422 and "Choose a library file to import." in empty.text
    assert no_token.status_code == 403 and cross_site.status_code == 403
    assert huge.status_code == 413 and "larger than 5 MB" in huge.text
    assert library_size(web) == 0
