"""`chroma-compactor bench`: the seed design, ours and the machine's limit, side by side.

Every configuration runs in its own process (so peak RSS is its own) against its own moto
server, with the S3 network model of ``network.py`` on every S3 request. See
docs/performance.md for the method and the latest figures.
"""
