"""agent-server: a LangGraph agent behind a thin FastAPI layer."""

__version__ = "0.1.0"
