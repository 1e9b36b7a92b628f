"""What `gdino` tells the shell: one exception type for problems the user can fix, and the exit codes.

Every subcommand ends with one of these codes (README, "Exit codes"):

- ``EXIT_OK`` (0): done, every input frame processed.
- ``EXIT_INTERNAL`` (1): a fault of ours; one line on stderr (``-v`` prints the traceback).
- ``EXIT_USAGE`` (2): a problem the user can fix (a :class:`CliError`); one line on stderr, no output written
  or the outputs named in the message are left as they were.
- ``EXIT_DAMAGED_INPUT`` (3): part of the input could not be used (a damaged file, frames refused); everything
  usable was processed and the outputs are complete and readable; the damage is reported with counts.
- ``EXIT_INTERRUPTED`` (130): Ctrl-C or SIGTERM; outputs are complete and readable up to the last frame written.
"""

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_DAMAGED_INPUT = 3
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """Printed by `gdino` as one line `gdino <command>: error: <message>`, exit code ``EXIT_USAGE``."""
