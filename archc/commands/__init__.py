"""One module per `archc` subcommand."""
