import sys

from calmon_cli.main import main

sys.exit(main())
