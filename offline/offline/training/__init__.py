"""`beepgpt train`: history → examples (with the sessionizer's shared conversation query) →
a versioned model directory. Needs the `train` extra; the service never imports this package."""
