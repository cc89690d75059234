"""What every service reports to operators: JSON logs and the shared metrics.

The endpoints that serve them (/metrics, /healthz, /readyz) are part of the service runtime
(`beepgpt.runtime.ops`), which keeps them up from before start-up until after shutdown.
"""
