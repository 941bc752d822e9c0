"""The orca worker: pulls chunks under leases, forwards their requests to an inference engine, commits outputs.

Entry points: ``python -m orca.worker`` (``orca.worker.__main__``) and, for serverless handlers,
``orca.worker.serverless.run_until_empty``.
"""
