"""The `gdino` console command and its subcommands."""
