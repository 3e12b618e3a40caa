"""``python -m healthsim``: the ``healthsim`` program, for a Python whose scripts folder is not
on the PATH (a venv that is not activated)."""

from .cli import main

main()
