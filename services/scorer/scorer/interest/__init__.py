"""The interest model: given the latest messages of a conversation written by others, how likely
is each member to engage? (docs/scoring.md)

- `prompt`: what the model reads (the same shape in training and live scoring);
- `substance`: the documented rule that turns content-free prompts into "nobody" examples;
- `features`: prompt + message vectors → the classifier's input;
- `model`: the local classifier (numpy inference, weights in the model directory);
- `openai_model`: the fine-tuned OpenAI alternative, read through log-probabilities;
- `finetune`: writing, validating and running the OpenAI fine-tuning job.
"""
