"""Ctrl-C ends every command with ``interrupted`` and status 130, even when the KeyboardInterrupt
does not survive the library code it lands in (CI once saw one raised inside Tune's import of
tensorboardX come out as ``TypeError: expected a message argument``, and a comparison end with a
traceback and status 1 instead of saying how to continue)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from adc_dist.errors import interrupted, run_cli

# A command whose Ctrl-C is turned into another exception on its way up, as CPython did.
SWALLOWED = textwrap.dedent("""
    import sys, time
    from adc_dist.errors import run_cli

    def main():
        print("ready", flush=True)
        try:
            time.sleep(60)
        except KeyboardInterrupt:
            raise TypeError("expected a message argument") from None

    run_cli(main)
""")


def test_a_ctrl_c_that_turned_into_another_exception_still_exits_130():
    proc = subprocess.Popen([sys.executable, "-c", SWALLOWED], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=60)[1]
    finally:
        proc.kill()
    assert proc.returncode == 130 and err == "interrupted\n", err


def test_without_a_ctrl_c_the_same_exception_is_a_bug_with_its_traceback_and_the_handler_is_put_back():
    def main():
        raise TypeError("expected a message argument")

    with pytest.raises(TypeError):
        run_cli(main)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert not interrupted(TypeError()) and interrupted(KeyboardInterrupt())
