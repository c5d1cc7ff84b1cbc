"""Server-made task ids (keys.new_task_id) come from a pool of random bytes read 4 KiB at a
time: every id stays unique across refills, threads and a fork, and keeps its format."""

from __future__ import annotations

import os
import threading

from appliance import keys, validation


def test_ids_are_unique_and_well_formed_across_refills() -> None:
    made = [keys.new_task_id("orders") for _ in range(3 * keys._RandomPool.READ // 16)]
    assert len(set(made)) == len(made)
    assert all(validation.SERVER_ID_RE.fullmatch(i) for i in made)
    assert {keys.topic_in_id(i) for i in made} == {"orders"}


def test_threads_never_get_the_same_id() -> None:
    made: list[list[str]] = [[] for _ in range(8)]

    def make(into: list[str]) -> None:
        into.extend(keys.new_task_id("t") for _ in range(2000))

    threads = [threading.Thread(target=make, args=(m,)) for m in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for m in made for i in m]
    assert len(set(every)) == len(every) == 16000


def test_a_forked_child_makes_other_ids_than_its_parent() -> None:
    keys.new_task_id("t")  # the pool holds unused bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.close(read)
        os.write(write, " ".join(keys.new_task_id("t") for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        child = set(f.read().split())
    os.waitpid(pid, 0)
    parent = {keys.new_task_id("t") for _ in range(10)}
    assert len(child) == 10 and not child & parent
