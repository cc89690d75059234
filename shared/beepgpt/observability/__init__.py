"""What every service exposes to operators: JSON logs, /metrics, /healthz and /readyz."""
