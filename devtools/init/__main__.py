import sys

from devtools.init.cli import main

sys.exit(main())
