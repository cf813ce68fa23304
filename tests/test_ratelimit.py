import pytest

from aipic.common.errors import AipicError
from aipic.web.ratelimit import RateLimiter


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_each_client_gets_its_own_bucket_and_a_clear_message():
    clock = Clock()
    limiter = RateLimiter(per_minute=6, burst=2, clock=clock)
    limiter.check("10.0.0.1")
    limiter.check("10.0.0.1")
    with pytest.raises(AipicError, match=r"at most 6 a minute\. Please try again in 10 s"):
        limiter.check("10.0.0.1")
    limiter.check("10.0.0.2")  # another client is not affected
    clock.now = 10.0
    limiter.check("10.0.0.1")  # one token back after 10 s


def test_zero_turns_it_off():
    limiter = RateLimiter(per_minute=0)
    for _ in range(1000):
        limiter.check("127.0.0.1")


def test_the_wait_is_never_said_to_be_zero_seconds():
    clock = Clock()
    limiter = RateLimiter(per_minute=6, burst=1, clock=clock)
    limiter.check("10.0.0.1")
    clock.now = 9.8  # 0.2 s to wait: said as 1 s, not "0 s"
    with pytest.raises(AipicError, match=r"Please try again in 1 s"):
        limiter.check("10.0.0.1")
