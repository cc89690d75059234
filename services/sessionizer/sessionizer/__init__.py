"""BeepGPT sessionizer: Slack messages into conversations with one Kaskada query (DESIGN.md §3)."""
