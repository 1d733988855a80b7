"""The config files an oslo.config command line names, in the order oslo.config reads them.

Standard library only: the agent reads its own command line with it before oslo.config
loads (ovnmeta.agent.earlysocket), and neutron's agents' command lines (ovnmeta.host.foreign).
"""

from __future__ import annotations

from pathlib import Path


def config_files(argv: list[str]) -> list[str]:
    """oslo.config's --config-file and --config-dir (its *.conf), in order."""
    files: list[str] = []
    for flag, value in zip(argv, argv[1:] + [""]):
        for option in ("--config-file", "--config-dir"):
            if flag.startswith(option + "="):
                flag, value = option, flag[len(option) + 1:]
            if flag != option or not value:
                continue
            if option == "--config-dir":
                try:
                    files += sorted(str(p) for p in Path(value).glob("*.conf"))
                except OSError:
                    pass
            else:
                files.append(value)
    return files
