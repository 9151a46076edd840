"""The preference center's "Your library" form: upload a library file (BibTeX, RIS,
CSL-JSON, or arXiv ids or DOIs), remove the library, or follow the authors an import offered.

A same-site form with the preference center's form token, like its other forms. The body is
capped before it is read (middleware.BodySizeLimit: the file's 5 MB and the form around it);
the file is read into memory once, parsed by the same use case as the CLI's
`--import-library`, and not kept: only the papers' texts are stored.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException

from digestd.subscribers.library import BadLibrary
from digestd.subscribers.library_file import MAX_BYTES
from digestd.subscribers.preferences import InvalidInput, parse_authors
from digestd.web import flows
from digestd.web.csrf import FORM_TOKEN_FIELD, form_token_valid
from digestd.web.pages import form_refused, prefs_page
from digestd.web.responses import state

router = APIRouter()

ACTIONS = ("import", "remove", "follow")
_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "action": {"type": "string", "enum": list(ACTIONS)},
                        FORM_TOKEN_FIELD: {"type": "string"},
                        "library": {"type": "string", "format": "binary"},
                        "authors": {"type": "string"},
                    },
                }
            }
        },
    }
}


async def _form(request: Request) -> FormData:
    """The posted form: one file at most, a few small fields; a broken body is a 400 page,
    a too-large one stays 413."""
    try:
        return await request.form(max_files=1, max_fields=8, max_part_size=64 * 1024)
    except Exception as exc:  # python-multipart raises several types for broken bodies
        if getattr(exc, "status_code", None) == 413:
            raise
        raise HTTPException(400, "The form data could not be read.") from None


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


@router.post(
    "/preferences/{token}/library",
    summary="Import my library, remove it, or follow its frequent authors",
    response_class=Response,
    openapi_extra=_BODY,
)
async def library_form(request: Request, token: str) -> Response:
    """Apply one action of the "Your library" form and show the preference center again."""
    web = state(request)
    ctx = web.ctx
    refused = form_refused(request, "library form (multipart/form-data)")
    if refused is not None:
        return refused
    form = await _form(request)
    page = await run_in_threadpool(flows.show, ctx, "preferences", token)
    if not form_token_valid(
        ctx.secret_key, "preferences", form.get(FORM_TOKEN_FIELD), ctx.now().timestamp()
    ):
        message = "This page had expired. Please make your change again."
        return prefs_page(request, page, 403, errors={"form": message})
    action = form.get("action", "import")
    if action == "import":
        upload = form.get("library")
        data = await upload.read(MAX_BYTES + 1) if isinstance(upload, UploadFile) else b""
        if not data:
            message = "Choose a library file to import."
            return prefs_page(request, page, 422, errors={"library": message})
        try:
            done = await run_in_threadpool(flows.import_library, ctx, token, data)
        except BadLibrary as exc:
            return prefs_page(request, page, 422, errors={"library": _sentence(str(exc))})
        assert done.page is not None
        return prefs_page(
            request, done.page, notice=done.summary + ".", offered_authors=done.offered_authors
        )
    if action == "remove":
        removed, page = await run_in_threadpool(flows.remove_library, ctx, token)
        notice = (
            f"Your library is removed ({removed} paper{'s' if removed != 1 else ''})."
            if removed
            else "There was no library to remove."
        )
        return prefs_page(request, page, notice=notice)
    if action == "follow":
        raw = form.get("authors")
        try:
            names = parse_authors(raw if isinstance(raw, str) else "")
            followed = await run_in_threadpool(flows.follow_authors, ctx, token, names)
        except InvalidInput as exc:
            return prefs_page(request, page, 422, errors={"form": _sentence(str(exc))})
        assert followed.page is not None
        notice = f"You now follow {', '.join(names)}." if names else "Nothing changed."
        return prefs_page(request, followed.page, notice=notice)
    return prefs_page(request, page, 400, errors={"form": "Unknown action."})
