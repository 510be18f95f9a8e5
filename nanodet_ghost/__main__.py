"""`python -m nanodet_ghost COMMAND ...`: the same as the console command `nanodet-ghost`."""
import sys

from nanodet_ghost.commands import main

sys.exit(main())
