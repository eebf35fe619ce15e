"""Ctrl-C inside a write transaction waits for its end (imgsearch/interrupts.py)."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from imgsearch.interrupts import held


def test_an_interrupt_waits_for_the_block_then_is_raised():
    reached = []
    with pytest.raises(KeyboardInterrupt), held():
        os.kill(os.getpid(), signal.SIGINT)
        reached.append("after the signal")  # the block runs on to its end
    assert reached == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_no_interrupt_no_exception_and_nesting_holds_once():
    with held(), held():
        pass
    with pytest.raises(KeyboardInterrupt), held():
        with held():
            os.kill(os.getpid(), signal.SIGINT)
        assert True  # the inner block does not raise: the outer one holds
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_other_threads_and_other_handlers_are_left_alone():
    seen = []

    def other() -> None:
        with held():
            seen.append(signal.getsignal(signal.SIGINT))

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen == [signal.default_int_handler]
    mine = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with held():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, mine)


def test_a_library_write_is_not_cut_by_ctrl_c(tmp_path):
    from imgsearch.library import Library

    lib = Library.open(tmp_path / "lib", create=True)
    with lib, lib.write_lock():
        with pytest.raises(KeyboardInterrupt), lib.writing() as conn:
            lib.set_meta_in(conn, note="first")
            os.kill(os.getpid(), signal.SIGINT)
            lib.set_meta_in(conn, note="second")  # still in the same transaction
        assert lib.meta()["note"] == "second"  # committed whole before the interrupt
