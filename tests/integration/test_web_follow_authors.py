"""The preference page's "Authors you follow" and "Authors to mute": labelled, saved like
the other preferences, shown back escaped, refused with a message next to the field."""

from __future__ import annotations

import re

from tests.integration.test_web_links import EMAIL, form_headers, make, prefs_form
from tests.support.web import (
    WebHarness,
    events,
    link_for,
    subscriber,
    web_fixture,  # noqa: F401  (the `web` fixture)
)

HOSTILE = '<script>alert("x")</script> Doe'


async def test_followed_and_muted_authors_are_saved_from_the_form(web: WebHarness) -> None:
    sub = make(web)
    path = link_for(web.ctx, "preferences", sub)
    async with web.client() as client:
        page = await client.get(path)
    for name, label in (("follows", "Authors you follow"), ("muted_authors", "Authors to mute")):
        assert f'<label for="{name}">{label}</label>' in page.text
        assert re.search(rf'<textarea id="{name}" name="{name}"[^>]*aria-describedby=', page.text)
    fields = {
        **await prefs_form(web, path),
        "action": "save",
        "follows": "Yann LeCun\r\nLeCun, Yann; Percy Liang\r\n",
        "muted_authors": HOSTILE,
    }
    async with web.client() as client:
        response = await client.post(path, data=fields, headers=form_headers())
    assert response.status_code == 200 and "preferences are saved" in response.text
    after = subscriber(web.ctx, EMAIL)
    assert after is not None
    assert (after.follows, after.muted_authors) == (["Yann LeCun", "Percy Liang"], [HOSTILE])
    assert after.topics == "graph neural networks"  # the rest untouched
    [changed] = events(web.ctx, "subscriber.updated")
    assert changed.actor == "web" and set(changed.detail["changes"]) == {
        "follows",
        "muted_authors",
    }
    # Shown back one a line, escaped.
    assert ">Yann LeCun\nPercy Liang</textarea>" in response.text
    assert "<script>alert" not in response.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; Doe</textarea>" in response.text

    # Emptied fields clear them.
    cleared = {**await prefs_form(web, path), "action": "save", "follows": "", "muted_authors": ""}
    async with web.client() as client:
        assert (await client.post(path, data=cleared, headers=form_headers())).status_code == 200
    after = subscriber(web.ctx, EMAIL)
    assert after is not None and (after.follows, after.muted_authors) == ([], [])


async def test_a_name_without_letters_is_refused_next_to_its_field(web: WebHarness) -> None:
    sub = make(web)
    path = link_for(web.ctx, "preferences", sub)
    fields = {**await prefs_form(web, path), "action": "save", "follows": "Ada Lovelace\n???"}
    async with web.client() as client:
        response = await client.post(path, data=fields, headers=form_headers())
    assert response.status_code == 422
    assert 'id="follows-error"' in response.text and "has no letters" in response.text
    assert "Ada Lovelace\n???</textarea>" in response.text  # what was typed stays
    after = subscriber(web.ctx, EMAIL)
    assert after is not None and after.follows == []
