"""Ctrl-C inside a write transaction waits for its end (imgsearch/interrupts.py)."""

from __future__ import annotations

import os
import signal
import sys
import threading

import pytest

from imgsearch.interrupts import check, held, watched


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


class _Other:
    def __del__(self) -> None:
        raise ValueError("not an interrupt")


class _Swallows:
    """Signals its own process from `__del__`, where Python prints an exception and goes on."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)


def test_an_interrupt_python_swallowed_is_raised_again_at_the_next_check(monkeypatch):
    reported: list[BaseException] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: reported.append(info.exc_value))
    reached = []
    with watched():
        _Swallows()
        reached.append("went on")  # Python could not raise the KeyboardInterrupt there
        with pytest.raises(KeyboardInterrupt):
            check()
    assert reached == ["went on"]
    assert reported == []  # not printed as an "Exception ignored ..." traceback
    with watched():
        _Other()  # any other unraisable error is still reported
    assert [type(e) for e in reported] == [ValueError]
    check()  # outside the run: nothing pending, nothing raised
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_inside_a_watched_run_a_held_interrupt_is_raised_at_the_blocks_end_and_noted():
    with watched():
        with pytest.raises(KeyboardInterrupt), held():
            os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            check()  # noted too, in case the caller's clean-up swallows the raise
        during = signal.getsignal(signal.SIGINT)
    assert during is not signal.default_int_handler  # watched's own, back after held
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    check()
