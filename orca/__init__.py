"""orca: batch LLM inference job orchestrator."""

__version__ = "0.1.0"
