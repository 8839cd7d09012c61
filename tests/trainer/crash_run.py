"""``torchrun ... tests/trainer/crash_run.py KILL_AT CONFIG [overrides]`` (not a test itself):
``trainer.train`` whose every rank SIGKILLs itself inside optimizer step ``KILL_AT``, after
that step's forward and backward: a hard kill with no cleanup, for test_distributed.py."""

from __future__ import annotations

import os
import signal
import sys

from trainer import train as train_mod


def main() -> int:
    kill_at, argv = int(sys.argv[1]), sys.argv[2:]
    real, calls = train_mod.optimizer_step, {"n": 0}

    def step(run, lr):
        calls["n"] += 1
        if calls["n"] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(run, lr)

    train_mod.optimizer_step = step
    return train_mod.train_main(argv)


if __name__ == "__main__":
    sys.exit(main())
