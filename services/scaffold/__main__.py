import sys

from services.scaffold.cli import main

sys.exit(main())
