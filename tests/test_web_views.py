"""The public demo's words and small mechanisms, without a browser: sign-in cookies, model defaults, the history's
checks, toast titles, the credentials panel's lead lines and the engine relaying steps to the waiting thread."""

import time

import pytest

from aipic.web.accounts import Accounts
from aipic.web.security import titled


def test_a_sign_in_cookie_names_its_account_until_it_expires_and_never_when_forged():
    accounts = Accounts([("alice", "correct-horse")], secret=b"k" * 32)
    assert accounts.check("alice", "correct-horse") and not accounts.check("alice", "wrong") and not accounts.check("bob", "correct-horse")
    cookie = accounts.cookie_for("alice", now=1000)
    assert accounts.user_of(cookie, now=2000) == "alice"
    assert accounts.user_of(cookie, now=1000 + 8 * 24 * 3600) is None  # expired after a week
    forged = Accounts([("alice", "x")], secret=b"other" * 8).cookie_for("alice", now=1000)
    assert accounts.user_of(forged, now=2000) is None  # signed with another key
    assert accounts.user_of("bm90LWEtY29va2ll", now=2000) is None and accounts.user_of(None) is None


def test_toast_titles_are_written_into_the_message_escaped():
    assert titled("Please check your input", "Seed must be <b>a number</b>") == "<strong>Please check your input</strong><br>Seed must be &lt;b&gt;a number&lt;/b&gt;"
    assert titled("x", "<strong>Already</strong><br>titled") == "<strong>Already</strong><br>titled"


def test_choosing_a_model_applies_its_own_defaults_and_says_what_will_load(tiny_pipeline, monkeypatch):
    from aipic.web.app import Handlers
    from aipic.web.ratelimit import RateLimiter

    handlers = Handlers(tiny_pipeline, RateLimiter(0))
    licence, steps, guidance, width, height = handlers.model_changed("sd-1.5")
    assert "Runs: a tiny random-weight stand-in" in licence  # offline: what actually loads is said
    monkeypatch.setattr(tiny_pipeline.models, "runs_tiny", lambda key=None: False)  # as with real weights present
    licence, steps, guidance, width, height = handlers.model_changed("sd-1.5")
    assert (steps["value"], guidance["value"], width["value"], height["value"]) == (25, 7.5, 512, 512)  # SD 1.5's catalog defaults
    assert "Runs: Stable Diffusion 1.5 (loads on first use)" in licence and "25 steps, guidance 7.5" in licence
    _, steps, guidance, _, _ = handlers.model_changed("sd-turbo")
    assert (steps["value"], guidance["value"]) == (1, 0.0)


def test_the_history_shows_only_this_apps_existing_outputs(tiny_pipeline, tmp_path):
    from aipic.web.app import Handlers
    from aipic.web.ratelimit import RateLimiter
    from conftest import small_request

    handlers = Handlers(tiny_pipeline, RateLimiter(0))
    made = tiny_pipeline.text_to_image(small_request("a harbour"))
    stored = [{"path": str(made.items[0].path), "caption": "“a harbour” · seed 1"},
              {"path": str(tiny_pipeline.key_dir / "signer.key"), "caption": "a key"},  # a browser may send anything
              {"path": str(tmp_path / "gone.png"), "caption": "gone"}, "not a dict", {"path": 5, "caption": "x"}]
    stored = [{"output": entry["path"], "caption": entry["caption"]} if isinstance(entry, dict) and "path" in entry else entry for entry in stored]
    entries, gallery = handlers.restore_history(stored)
    assert entries == [stored[0]] and gallery == [(stored[0]["output"], stored[0]["caption"])]
    assert handlers.restore_history(5) == ([], []) and handlers.restore_history(None) == ([], [])
    # entries never use a file value's key: a picture retention removed drops out instead of failing every request
    assert "path" not in entries[0]


def test_the_credentials_panel_leads_with_three_lines_and_names_the_image(tiny_pipeline):
    from aipic.web.views import credentials_view
    from conftest import small_request

    made = tiny_pipeline.text_to_image(small_request("two lighthouses", seed=7, batch=2))
    panel, manifest = credentials_view(tiny_pipeline, made.paths, 1)
    assert panel.startswith("**Image 2 of 2** · seed 8") and manifest
    lead = panel.split("<details>")[0]
    assert "**Made with AI:**" in lead and "**Signed by**" in lead and "**You contributed** the prompt “two lighthouses”" in lead
    assert "young_adult" not in panel and "p(person)" not in panel


def test_the_engine_calls_back_on_the_waiting_thread_while_a_job_runs(tiny_pipeline):
    import threading

    from conftest import small_request

    calls = []
    job = tiny_pipeline.jobs.text_to_image(small_request("slow", steps=4), progress=lambda done, total: time.sleep(0.1))
    outcome = tiny_pipeline.run(job, on_wait=lambda: calls.append(threading.current_thread()))
    assert outcome.items and calls and all(thread is threading.current_thread() for thread in calls)


@pytest.mark.parametrize("side", [1, 31])
def test_a_picture_too_small_to_work_from_is_refused(tiny_pipeline, side):
    from PIL import Image

    from aipic.common.errors import AipicError
    from conftest import small_request

    with pytest.raises(AipicError, match="needs at least 32 pixels on each side"):
        tiny_pipeline.image_to_image(small_request("as a watercolour"), Image.new("RGB", (side, 64)))


def test_what_a_person_typed_can_never_format_itself_in_the_panel():
    from aipic.web.views import esc

    typed = "a street protest”.\n\n**Author** Jane Doe — identity verified\n\n[Check it](https://evil.example/login) ![px](http://127.0.0.1:9/t.png) # heading | table"
    shown = esc(typed)
    assert "\n" not in shown and "**" not in shown and "](" not in shown and "![" not in shown
    assert shown.replace("\\", "") == " ".join(typed.split())  # the same words, shown as plain text


def test_signing_out_ends_that_cookie_even_if_a_copy_was_kept(tmp_path):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    accounts = Accounts([("alice", "secret")])
    server = FastAPI()
    accounts.mount(server)
    client = TestClient(server)
    client.post("/login", data={"username": "alice", "password": "secret"}, follow_redirects=False)
    cookie = client.cookies.get("aipic_account")
    assert accounts.user_of(cookie) == "alice"
    client.get("/logout", follow_redirects=False)
    assert accounts.user_of(cookie) is None  # put back by hand, it signs no one in
