"""``export -p`` read back exactly as ``env -0`` shows the same shell's environment."""

from __future__ import annotations

import subprocess

import pytest

from backends.bash_exports import EXPORTS_COMMAND, parse_exports
from backends.shell import BASH

# Quotes, backslashes, newlines, control and invalid UTF-8 bytes, non-ASCII, an empty value, an
# exported integer and read-only, one exported but never set, and exported arrays (never in a
# program's environment) whose elements hold what ends an array.
SETUP = r"""
export A=$'a\x01b' B=$'x\ny' C='q"$`\z' D="é" F="x=y" G="" H=$'\xff\xfe' I=$'tab\there'
export J="emoji 😀" K=$'\x7f' L="'single'" M=$'cr\rlf' lower_case=1 _under=2
declare -x UNSET_ONLY
declare -ix NUM=5
declare -rx RO=const
arr=(1 ")
" 3); export arr
declare -Ax assoc=([k]=v ["a b"]=")")
"""


def _env0(data: bytes) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in data.split(b"\0"):
        if item:
            name, _, value = item.decode(errors="replace").partition("=")
            env[name] = value
    return env


@pytest.mark.parametrize("locale", ["C.UTF-8", "C"])
@pytest.mark.parametrize("posix", [False, True])
def test_export_p_reads_as_env_shows_it(locale: str, posix: bool) -> None:
    env = {"PATH": "/usr/bin:/bin", "LANG": locale, "LC_ALL": locale}
    mode = "set -o posix; " if posix else ""

    def run(command: str) -> bytes:
        done = subprocess.run(
            [BASH, "--norc", "-c", SETUP + mode + command], capture_output=True, env=env, check=True
        )
        return done.stdout

    ours = parse_exports(run(EXPORTS_COMMAND))
    reference = _env0(run("env -0"))
    for volatile in ("_", "SHLVL"):  # the env process itself changes these
        ours.pop(volatile, None)
        reference.pop(volatile, None)
    assert ours == reference
    assert ours["B"] == "x\ny" and ours["C"] == 'q"$`\\z' and "UNSET_ONLY" not in ours


def test_output_that_is_not_export_p_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_exports(b"hello\n")
