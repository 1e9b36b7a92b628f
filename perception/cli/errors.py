"""The one exception type subcommands raise for problems the user can fix."""


class CliError(Exception):
    """Printed by `gdino` as one line `gdino <command>: error: <message>`, exit code 2."""
