import sys

from fer_features.cli.app import main

sys.exit(main())
