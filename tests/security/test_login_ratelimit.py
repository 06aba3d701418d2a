"""Password guessing is refused: a few failed sign-ins per user name and per address a minute, then HTTP 429
with a reason, on the real server and on the login page. The counting itself runs on a fake clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _websec import http, serve_users, server_log
from ui.conftest import Server

from parley.web._ratelimit import TOO_MANY, LoginLimiter

PASSWORDS = {
    "alice": "alice-password-1",
    "bob": "bob-password-22",
    "carol": "carol-password-3",
    "dave": "dave-password-44",
}
GUESSES = [f"guess-{i}-hunter2" for i in range(40)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limiter(clock: Clock) -> LoginLimiter:
    return LoginLimiter(per_user=5, per_address=10, window_s=60, clock=clock)


def _fail(limiter: LoginLimiter, user: str, address: str) -> float:
    """One wrong password (or a refusal: the seconds to wait)."""
    return limiter.begin(user, address)


# -- the counting ---------------------------------------------------------------------------------------


def test_five_failures_for_a_name_lock_it_for_the_rest_of_the_minute(
    limiter: LoginLimiter, clock: Clock
) -> None:
    for i in range(5):
        assert _fail(limiter, "alice", f"10.0.0.{i}") == 0  # from five places: the name is what counts
        clock.now += 1
    assert limiter.begin("alice", "10.0.0.99") == pytest.approx(55)  # the first failure ages out in 55 s
    assert limiter.begin(" ALICE ", "10.0.0.98") > 0  # the same name however it is typed
    assert limiter.begin("bob", "10.0.0.97") == 0  # others are not affected
    clock.now += 55
    assert limiter.begin("alice", "10.0.0.99") == 0  # one failure left the window: one more try


def test_ten_failures_from_an_address_lock_it_whatever_the_name(limiter: LoginLimiter, clock: Clock) -> None:
    for i in range(10):
        assert _fail(limiter, f"user{i}", "203.0.113.7") == 0
    assert limiter.begin("alice", "203.0.113.7") == pytest.approx(60)
    assert limiter.begin("alice", "198.51.100.2") == 0
    clock.now += 60
    assert limiter.begin("someone", "203.0.113.7") == 0


def test_a_success_forgives_the_names_failures_but_not_the_addresses(limiter: LoginLimiter) -> None:
    for _ in range(4):
        _fail(limiter, "alice", "10.0.0.1")
    assert limiter.begin("alice", "10.0.0.1") == 0
    limiter.succeeded("alice", "10.0.0.1")
    for _ in range(4):
        assert _fail(limiter, "alice", "10.0.0.2") == 0  # a fresh count for the name
    for i in range(6):
        assert _fail(limiter, f"other{i}", "10.0.0.1") == 0  # 4 + 6 failures: the success was not one
    assert limiter.begin("carol", "10.0.0.1") > 0


def test_parallel_guesses_cannot_slip_past_the_count(limiter: LoginLimiter) -> None:
    """Attempts count from the moment they start, before their answers come back."""
    started = [limiter.begin("alice", f"10.1.0.{i}") for i in range(50)]
    assert started.count(0) == 5


def test_a_malformed_request_does_not_count(limiter: LoginLimiter) -> None:
    for _ in range(20):
        assert limiter.begin("alice", "10.0.0.1") == 0
        limiter.void("alice", "10.0.0.1")


def test_nothing_secret_is_kept(limiter: LoginLimiter) -> None:
    password_in_name_field = "correct horse battery staple"
    limiter.begin(password_in_name_field, "10.0.0.1")
    assert password_in_name_field not in repr(vars(limiter))
    assert password_in_name_field.upper() not in repr(vars(limiter)).upper()


# -- on the real server -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module: each test locks out names and addresses of its own."""
    yield from serve_users(tmp_path_factory.mktemp("logins"), **PASSWORDS)


def test_guessing_a_password_is_refused_after_five_failures(server: Server) -> None:
    answers = []
    for guess in GUESSES[:5]:
        with http(server, source="127.0.0.2") as client:
            answers.append(client.post("/login", data={"username": "alice", "password": guess}).status_code)
    assert answers == [401] * 5

    # The sixth try is refused before the password is checked, even the right one, from anywhere.
    for source in ("127.0.0.3", "127.0.0.4"):
        with http(server, source=source) as client:
            refused = client.post("/login", data={"username": "alice", "password": PASSWORDS["alice"]})
            assert refused.status_code == 429
            assert refused.json()["detail"] == TOO_MANY
            assert "Too many failed sign-ins" in refused.json()["message"]
            assert 0 < int(refused.headers["retry-after"]) <= 60
            assert "access_token" not in refused.cookies
    # Bob, signing in from the address the guesses came from, is not locked out.
    with http(server, source="127.0.0.2") as client:
        assert (
            client.post("/login", data={"username": "bob", "password": PASSWORDS["bob"]}).status_code == 200
        )

    log = server_log(server)
    assert log.count("sign-in refused for 127.0.0.3:") == log.count("sign-in refused for 127.0.0.4:") == 1
    assert not any(secret in log for secret in [*GUESSES[:5], *PASSWORDS.values()])


def test_one_address_cannot_try_many_names(server: Server) -> None:
    with http(server, source="127.0.0.5") as client:
        statuses = [
            client.post("/login", data={"username": f"user{i}", "password": g}).status_code
            for i, g in enumerate(GUESSES[:10])
        ]
        assert statuses == [401] * 10
        refused = client.post("/login", data={"username": "carol", "password": PASSWORDS["carol"]})
        assert refused.status_code == 429 and refused.json()["detail"] == TOO_MANY
        # The frontend posts a multipart form: the same count applies to it.
        multipart = client.post(
            "/login", files={"username": (None, "bob"), "password": (None, PASSWORDS["bob"])}
        )
        assert multipart.status_code == 429
    with http(server, source="127.0.0.6") as client:
        assert (
            client.post("/login", data={"username": "carol", "password": PASSWORDS["carol"]}).status_code
            == 200
        )


def test_malformed_and_oversized_sign_ins_are_refused_without_counting(server: Server) -> None:
    with http(server, source="127.0.0.7") as client:
        for _ in range(12):
            assert (
                client.post("/login", content=b"{}", headers={"content-type": "application/json"}).status_code
                == 422
            )
        huge = client.post("/login", data={"username": "dave", "password": "x" * 100_000})
        assert huge.status_code == 413
        assert (
            client.post("/login", data={"username": "dave", "password": PASSWORDS["dave"]}).status_code == 200
        )


def test_the_login_page_says_why_it_refuses(new_page, server: Server) -> None:
    from playwright.sync_api import expect

    page = new_page()
    page.goto(server.url + "/login")
    statuses = []
    for guess in GUESSES[:6]:
        page.locator("#email").fill("erin")
        page.locator("#password").fill(guess)
        with page.expect_response(
            lambda r: r.url.endswith("/login") and r.request.method == "POST"
        ) as answer:
            page.locator('button[type="submit"]').click()
        statuses.append(answer.value.status)
    assert statuses == [401] * 5 + [429]
    expect(page.get_by_text("Too many failed sign-ins for this user or from this address")).to_be_visible()
    expect(page).to_have_url(server.url + "/login")
