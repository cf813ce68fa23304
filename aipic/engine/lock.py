"""The model lock, with a polite hand-over: only GPU stages take it; a long job (style transfer) yields it between
its steps to a waiting batch, so a 500-step optimisation does not hold every other request back."""

from __future__ import annotations

import threading


class ModelLock:
    """The model lock, with a polite hand-over: a long job (style transfer) yields it between its steps to a
    waiting batch, so a 500-step optimisation does not hold every other request back for its whole run."""

    def __init__(self):
        self._lock = threading.Lock()
        self._state = threading.Condition()
        self._waiting = 0
        self._taken = 0  # counts acquisitions: a yield waits until someone else has taken the lock

    def acquire(self) -> None:
        with self._state:
            self._waiting += 1
        try:
            self._lock.acquire()
        finally:
            with self._state:
                self._waiting -= 1
        with self._state:
            self._taken += 1
            self._state.notify_all()

    def release(self) -> None:
        self._lock.release()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def yield_to_waiters(self, timeout: float = 10.0) -> None:
        """Held by the caller: if anyone waits for the lock, let them have it, then take it back."""
        with self._state:
            if not self._waiting:
                return
            taken = self._taken
        self._lock.release()
        try:
            with self._state:
                self._state.wait_for(lambda: self._taken != taken, timeout)
        finally:
            self.acquire()
