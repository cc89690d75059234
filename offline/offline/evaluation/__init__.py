"""`beepgpt eval`: measure the interest model and the topic matcher on held-out data, print a
table and write a JSON report with plots. Needs the `train` extra."""
