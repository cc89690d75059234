"""BeepGPT's scorer: who should hear about a conversation, and why (docs/scoring.md).

The models (`scorer.interest`, `scorer.topics`, `scorer.embeddings`, `scorer.artifact`) are
plain libraries the service (`scorer.service`) and the trainer (`offline.training`,
`offline.evaluation`) share; the service never imports the trainer's dependencies.
"""
