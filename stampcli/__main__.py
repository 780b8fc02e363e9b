"""``python -m stampcli``: the same as the ``stamp`` command."""

from stampcli.cli.app import main

if __name__ == "__main__":
    main()
