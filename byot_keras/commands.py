"""What every console script shares: `--help` lists the command's own flags, and an
expected failure (bad flags, bad input, an output folder that is not the command's) is
one line on stderr, with no traceback.

absl's own `--help` shows only the flags of the script's `__main__` module, which for a
console script holds none of them, and exits 1; `run` answers it instead.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable

from absl import app, flags

HELP_FLAGS = ("--help", "-h", "-?", "--helpshort")
# Failures a user can fix: reported as one line. Anything else is a bug and keeps its
# traceback.
EXPECTED_ERRORS = (ValueError, OSError, app.UsageError)


def fail(command: str, message: str, status: int = 1):
    """Prints `<command>: error: <message>` on stderr and exits with `status`."""
    print(f"{command}: error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(status)


def usage(command: str, doc: str | None, flag_values: flags.FlagValues,
          names: list[str]) -> str:
    """The command's description and its own flags, one entry per flag."""
    lines = [textwrap.dedent(doc or "").strip(), "", f"{command} flags:"]
    for name in names:
        flag = flag_values[name]
        spelled = f"--[no]{name}" if flag.boolean else f"--{name}"
        default = "(required)" if flag.default is None and _is_required(flag_values, name) \
            else f"(default: {flag.default_as_str or 'none'})"
        lines.append(f"  {spelled}: {flag.help} {default}")
    lines.append("")
    lines.append("--helpfull lists every flag, including TensorFlow's and absl's.")
    return "\n".join(lines)


def _is_required(flag_values: flags.FlagValues, name: str) -> bool:
    # absl marks a required flag with a validator; its message says "must have a value".
    return any("must have a value" in getattr(v, "message", "")
               for v in flag_values[name].validators)


def run(command: str, doc: str | None, define_flags: Callable[[], None],
        main: Callable[[list[str]], None], *, errors: tuple = (),
        flag_values: flags.FlagValues = flags.FLAGS, argv: list[str] | None = None) -> None:
    """Defines the command's flags, answers `--help`, parses, and runs `main`.

    Args:
        command: the console script's name, e.g. "byot-export".
        doc: its description (the module docstring).
        define_flags: defines the command's flags on `flag_values`.
        main: absl-style `main(argv)`.
        errors: more exception types that mean bad input (besides ValueError,
            OSError and absl's UsageError).
    """
    argv = list(sys.argv if argv is None else argv)
    before = set(flag_values)
    define_flags()
    own = [name for name in flag_values if name not in before]
    if any(arg in HELP_FLAGS for arg in argv[1:]):
        print(usage(command, doc, flag_values, own))
        sys.exit(0)

    def parse(arguments):
        try:
            return flag_values(arguments)
        except flags.Error as error:
            fail(command, f"{error} ({command} --help lists the flags)")

    def guarded(arguments):
        try:
            return main(arguments)
        except (*EXPECTED_ERRORS, *errors) as error:
            fail(command, str(error))

    sys.argv = argv
    app.run(guarded, flags_parser=parse)
