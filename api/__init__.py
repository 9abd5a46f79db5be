"""The recommendation HTTP API: ``api.app.create_app(settings)``; run by ``recsys serve``."""
