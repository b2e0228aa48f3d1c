"""``signalprop.diagnose``: a gradient-health check for any PyTorch model (being written)."""
