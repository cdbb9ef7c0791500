import sys


def main() -> None:
    """Entry point of ``pipectl`` and ``python -m pipectl``.

    A plain no-op ``tick`` (cron's every minute) is answered by quicktick before
    typer is imported; everything else goes to the CLI proper.
    """
    if "tick" in sys.argv[1:]:  # everything else skips quicktick's imports
        from pipectl.engine.quicktick import main as quick
        code = quick(sys.argv[1:])
        if code is not None:
            sys.exit(code)
    from pipectl.cli.main import main as cli_main
    cli_main()


if __name__ == "__main__":
    main()
