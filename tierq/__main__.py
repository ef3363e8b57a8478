import sys

from tierq.cli import main

sys.exit(main())
