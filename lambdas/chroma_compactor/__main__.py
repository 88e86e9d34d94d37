import sys

from chroma_compactor.cli import main

sys.exit(main())
