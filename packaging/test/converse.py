#!/usr/bin/env python3
"""Run a command on a pseudo-terminal and answer its prompts.

    converse.py [--timeout SECONDS] PROMPT=ANSWER ... -- COMMAND ...

Each PROMPT=ANSWER pair is used once, in order: when PROMPT shows up in the
output after the previous match, ANSWER and a newline are typed. Prints the
whole transcript and exits with the command's exit status (124 on timeout).

Why a pty: pamtester reads answers through libpam's misc_conv, which on a
terminal flushes pending input before each hidden prompt, and on a pipe may
swallow both answers in one read(); answering each prompt when it appears
is the only reliable way.
"""
import os
import pty
import select
import signal
import sys
import time


def main(argv):
    timeout = 30.0
    if argv[:1] == ["--timeout"]:
        timeout, argv = float(argv[1]), argv[2:]
    if "--" not in argv:
        sys.exit("usage: converse.py [--timeout S] PROMPT=ANSWER ... -- COMMAND ...")
    split = argv.index("--")
    pairs = [p.split("=", 1) for p in argv[:split]]
    command = argv[split + 1:]

    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(command[0], command)

    output, seen, deadline = b"", 0, time.monotonic() + timeout
    timed_out = False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            os.kill(pid, signal.SIGKILL)
            break
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the command closed the terminal
            break
        if not chunk:
            break
        output += chunk
        if pairs:
            at = output.find(pairs[0][0].encode(), seen)
            if at >= 0:
                seen = at + len(pairs[0][0])
                os.write(fd, pairs.pop(0)[1].encode() + b"\n")

    _, status = os.waitpid(pid, 0)
    sys.stdout.write(output.decode(errors="replace").replace("\r\n", "\n"))
    if timed_out:
        print(f"\nconverse.py: no end after {timeout:.0f}s; killed", file=sys.stderr)
        return 124
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
