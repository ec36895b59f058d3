"""``python -m irnet_fast`` = the ``irnet-fast`` command (also under torchrun)."""
import sys

from .cli import main

sys.exit(main())
