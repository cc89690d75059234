"""A local OpenAI API that the official `openai` client can be pointed at (`base_url`).

The models issue's tests must run the whole fine-tuning path — upload, job, progress, model id,
scoring through log-probabilities — and see rate limits, without the internet. The stand-in
speaks the subset BeepGPT uses: `files`, `fine_tuning.jobs` (create, retrieve, list, events),
`chat.completions` with `logprobs`/`top_logprobs`, and `embeddings`; plus faults (HTTP 429 with
`Retry-After`, 5xx) on demand and a record of every request.

    with OpenAIStandin.running() as api:              # its own thread: for the sync client
        client = OpenAI(api_key="test", base_url=api.base_url, max_retries=0)
        api.faults.add("/v1/chat/completions", status=429, times=2)

Jobs advance one stage each time they are retrieved (validating → queued → running steps →
succeeded), so a test drives a job to completion by polling it, never by waiting. The
fine-tuned "model" answers from its training file: the label most often given to the same
prompt there, else the most common label, with log-probabilities from those counts.
"""

from .faults import Fault, Faults
from .server import OpenAIStandin
from .state import Store

__all__ = ["Fault", "Faults", "OpenAIStandin", "Store"]
