"""Test helpers shared across suites: jobs written straight into a store, worker subprocesses.

The fake OpenAI server itself ships in the package (``orca.worker.engines.fake_server``)
because the worker's ``fake`` engine kind starts it.
"""
