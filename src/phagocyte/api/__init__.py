"""The REST API (FastAPI, OpenAPI 3.1) and the web console, served by `phago serve`."""
