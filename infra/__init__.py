"""The Pulumi program that deploys a chroma-compactor pipeline (entry point: `__main__.py`)."""
