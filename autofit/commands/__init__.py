"""One module per CLI subcommand. Commands parse and print; the library does the work."""
