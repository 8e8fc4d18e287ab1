"""`python -m kerastroke compare ...`: the same command as the `kerastroke` script."""

from kerastroke.compare.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
