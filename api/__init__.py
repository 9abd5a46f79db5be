"""The recommendation HTTP API: ``api.factory.create_app(settings)``; run by ``recsys serve``."""
