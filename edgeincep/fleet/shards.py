"""Work stealing over shards of images, with each shard's result kept exactly once.

Boards take the next shard when they finish one, so a fast board takes more. A shard whose board fails goes
back to the front of the queue for another board; the result of a board that has been given up on is
dropped even if it arrives, so no image is ever counted twice, and a shard that failed on `max_attempts`
boards is reported lost rather than retried forever.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field


@dataclass
class Shard:
    index: int
    images: list[int]                     # indices into the run's image list
    attempts: list[str] = field(default_factory=list)  # "board: why" of each failed attempt


def split(count: int, size: int) -> list[Shard]:
    return [Shard(i, list(range(start, min(start + size, count)))) for i, start in enumerate(range(0, count, size))]


WAIT = "wait"  # try_take: nothing to take now, but a shard that is out may come back


class ShardQueue:
    def __init__(self, shards: list[Shard], max_attempts: int = 3):
        self._todo = deque(shards)
        self._running: dict[int, str] = {}
        self._out: dict[int, Shard] = {}
        self._cond = threading.Condition()
        self.max_attempts = max_attempts
        self.results: dict[int, tuple[str, object]] = {}  # shard index -> (board, result)
        self.lost: list[Shard] = []
        self.total = len(shards)

    def take(self, board: str) -> Shard | None:
        """The next shard for `board`, waiting while others run shards that may come back; None when done."""
        with self._cond:
            while not self._todo and self._running:
                self._cond.wait()
            if not self._todo:
                return None
            shard = self._todo.popleft()
            self._running[shard.index] = board
            self._out[shard.index] = shard
            return shard

    def try_take(self, board: str) -> Shard | str | None:
        """take() without waiting, for a caller that cannot block (a Ray actor): a shard, WAIT, or None when done."""
        with self._cond:
            if not self._todo:
                return WAIT if self._running else None
            shard = self._todo.popleft()
            self._running[shard.index] = board
            self._out[shard.index] = shard
            return shard

    def complete(self, shard: Shard, board: str, result: object) -> bool:
        """Record the result; False (and nothing recorded) when `board` no longer holds the shard."""
        with self._cond:
            if self._running.get(shard.index) != board or shard.index in self.results:
                return False
            del self._running[shard.index]
            self.results[shard.index] = (board, result)
            self._cond.notify_all()
            return True

    def fail(self, shard: Shard, board: str, why: str) -> None:
        """`board` could not finish the shard: another board gets it next, or it is lost after max_attempts."""
        with self._cond:
            if self._running.get(shard.index) != board:
                return
            del self._running[shard.index]
            shard.attempts.append(f"{board}: {why}")
            if len(shard.attempts) >= self.max_attempts:
                self.lost.append(shard)
            else:
                self._todo.appendleft(shard)
            self._cond.notify_all()

    def release(self, board: str, why: str) -> None:
        """`board` is gone (its process died without saying which shard it held): its shards go back."""
        for index in [i for i, b in self._running.items() if b == board]:
            self.fail(self._out[index], board, why)

    def abandon(self) -> list[Shard]:
        """No board is left: whatever was not done is lost."""
        with self._cond:
            self.lost.extend(self._todo)
            self._todo.clear()
            self._cond.notify_all()
            return self.lost

    @property
    def done(self) -> int:
        return len(self.results)
