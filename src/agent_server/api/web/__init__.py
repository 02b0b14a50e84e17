"""The built-in chat page: `GET /` and its assets under `/static/`."""
