"""The shard queue: work stealing with every shard's result kept exactly once."""
from __future__ import annotations

import threading
import time

from edgeincep.fleet.shards import ShardQueue, split


def test_split_covers_every_image_once_in_order():
    shards = split(10, 4)
    assert [s.images for s in shards] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_a_failed_shard_goes_to_the_next_board_and_a_late_result_from_the_failed_board_is_dropped():
    q = ShardQueue(split(4, 2))
    a = q.take("a")
    b = q.take("b")
    q.fail(a, "a", "connection lost")
    again = q.take("b2")
    assert again.index == a.index and again.attempts == ["a: connection lost"]
    assert q.complete(again, "b2", "from b2") is True
    assert q.complete(a, "a", "late, from a") is False  # a no longer holds it: never counted twice
    assert q.complete(b, "b", "from b") is True
    assert q.take("b") is None and q.results == {0: ("b2", "from b2"), 1: ("b", "from b")}


def test_a_shard_that_fails_everywhere_is_lost_not_retried_forever():
    q = ShardQueue(split(2, 2), max_attempts=2)
    for board in ("a", "b"):
        q.fail(q.take(board), board, "disk full")
    assert q.take("c") is None and [s.index for s in q.lost] == [0] and q.done == 0


def test_a_board_waits_while_a_shard_is_out_and_takes_it_when_it_comes_back():
    q = ShardQueue(split(1, 1))
    shard = q.take("a")
    got = []
    waiter = threading.Thread(target=lambda: got.append(q.take("b")))
    waiter.start()
    time.sleep(0.2)
    assert waiter.is_alive() and not got  # nothing to take yet, but the shard may come back
    q.fail(shard, "a", "killed")
    waiter.join(5)
    assert got and got[0].index == 0
    q.complete(got[0], "b", "ok")
    assert q.take("a") is None


def test_try_take_never_blocks_and_a_vanished_board_releases_what_it_held():
    from edgeincep.fleet.shards import WAIT

    q = ShardQueue(split(2, 1))
    a, b = q.try_take("a"), q.try_take("b")
    assert q.try_take("c") == WAIT  # both out: they may come back
    q.release("a", "its Ray task died")
    again = q.try_take("c")
    assert again.index == a.index and again.attempts == ["a: its Ray task died"]
    q.complete(again, "c", "ok")
    q.complete(b, "b", "ok")
    assert q.try_take("c") is None and q.done == 2
