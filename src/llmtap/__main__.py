"""``python -m llmtap`` is ``llmtap``."""

import sys

from llmtap.cli import main

sys.exit(main())
