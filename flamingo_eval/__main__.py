import sys

from flamingo_eval.cli import main

sys.exit(main())
