"""How the processes run: gunicorn and its worker supervision, logs, Prometheus metrics, secrets."""
