"""Run a brownie command against a private anvil on a free port.

Brownie's `development` network launches anvil on port 8545 and silently
*attaches* to whatever already listens there. `python -m gpucredit.localchain
run scripts/demo.py` picks a free port first, so the demo and the benchmarks
never touch a foreign chain. `run` goes through `gpucredit.run` (which imports
the script from its file, so the checkout may sit under any path); any other
command (`test`, `console`) is handed over to brownie's own command line.
"""

from __future__ import annotations

import socket
import sys


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def use_free_port_for_development() -> int:
    """Points brownie's `development` network (anvil) at a free port."""
    from brownie._config import CONFIG

    port = free_port()
    CONFIG.networks["development"].setdefault("cmd_settings", {})["port"] = port
    return port


def main(argv: list[str]) -> None:
    if argv[:1] == ["run"]:
        from gpucredit.run import main as run_main

        run_main(argv[1:])
        return
    from brownie._cli.__main__ import main as brownie_main

    use_free_port_for_development()
    sys.argv = ["brownie", *argv]
    brownie_main()


if __name__ == "__main__":
    main(sys.argv[1:])
