"""Who is asking: the client's address (for the rate limit), the signed-in account (for authorship), and the
ZeroGPU wrapper that lends the GPU for one call."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def client_of(request) -> str | None:
    """The client's address as the server saw it (a proxy in front must be trusted before its headers are)."""
    return getattr(getattr(request, "client", None), "host", None)


def signed_in_account(http, on_spaces: bool = False, accounts=None) -> tuple[str, str] | None:
    """(account name, who verified it) of the person signed in, or None: anonymous.

    An account the operator configures (AIPIC_AUTH) is named by aipic's signed sign-in cookie
    (aipic.web.accounts); on Hugging Face Spaces, ``gr.LoginButton`` keeps the Hugging Face account in the session.
    """
    name = accounts.user_of_request(http) if accounts is not None and http is not None else None
    if name:
        return str(name), "account on this aipic instance"
    if on_spaces and http is not None:
        try:
            info = http.request.session.get("oauth_info") or {}
        except Exception:  # noqa: BLE001 - no session middleware: nobody signed in through Hugging Face
            info = {}
        username = (info.get("userinfo") or {}).get("preferred_username")
        if username:
            return str(username), "Hugging Face account"
    return None


def gpu_call(function, seconds: float):
    """On Hugging Face ZeroGPU, the GPU exists only inside a ``@spaces.GPU`` call: wrap the engine's inline run in
    one (at most ``seconds``). Elsewhere (no ``spaces`` package) the function runs as it is."""
    try:
        import spaces
    except ImportError:
        log.warning("inline mode without the spaces package: running without @spaces.GPU")
        return function
    return spaces.GPU(duration=int(seconds))(function)
