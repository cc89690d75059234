"""Local development tools: the real broker and Redis on demand, the Slack stand-in, the demo."""
