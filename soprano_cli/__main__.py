"""`python -m soprano_cli` is `soprano`."""

from soprano_cli.cli.app import main

if __name__ == "__main__":
    main()
