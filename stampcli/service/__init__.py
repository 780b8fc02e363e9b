"""Use cases the CLI and the server call: one module per job, over the store protocols."""
