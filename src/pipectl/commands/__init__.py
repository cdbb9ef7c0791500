"""Command groups. Each module registers its commands on ``pipectl.cli.app`` when imported,
imports only typer and the standard library at module level, and keeps the work in the library."""
