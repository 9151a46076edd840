"""Cross-site post protection for the state-changing forms.

Two independent checks: the browser's own provenance headers (Origin and
Sec-Fetch-Site must point at DIGESTD_BASE_URL's origin) and a signed, expiring
form token embedded in each form. JSON posts need no form token: a cross-site
page cannot send `application/json` without a CORS preflight, which this app
never grants. The RFC 8058 one-click endpoint is deliberately not checked:
mail providers post to it from their own servers.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request

FORM_TOKEN_MAX_AGE = 24 * 3600
FORM_TOKEN_FIELD = "csrf_token"
_SAFE_FETCH_SITES = ("same-origin", "none")


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return f"{scheme}://{host}:{port}"


def same_origin(request: Request, base_url: str) -> bool:
    """False when the browser says this post came from another site."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site.lower() not in _SAFE_FETCH_SITES:
        return False
    origin = request.headers.get("origin")
    if origin is not None:
        if origin.strip().lower() == "null":
            return False
        try:
            return _origin_of(origin.strip()) == _origin_of(base_url)
        except ValueError:
            return False
    # No provenance headers at all: not a modern browser's cross-site post (curl, scripts).
    return True


def _serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt="digestd.form")


def make_form_token(secret_key: str, form: str) -> str:
    """A signed token naming the form it was rendered into."""
    return str(_serializer(secret_key).dumps(form))


def form_token_valid(secret_key: str, form: str, token: object, now_ts: float) -> bool:
    """True for a token this site issued for `form` less than a day before `now_ts`."""
    if not isinstance(token, str) or not token or len(token) > 512:
        return False
    try:
        payload, signed_at = _serializer(secret_key).loads(token, return_timestamp=True)
    except BadSignature:
        return False
    return bool(payload == form and now_ts - signed_at.timestamp() <= FORM_TOKEN_MAX_AGE)
