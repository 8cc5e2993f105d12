import sys

from mesalab.cli import main

sys.exit(main())
