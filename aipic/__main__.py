import sys

from aipic.cli import main

sys.exit(main())
