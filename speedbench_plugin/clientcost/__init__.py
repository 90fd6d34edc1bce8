"""What the client costs per output token, side by side with vLLM's own benchmark client
(``make client-cost``, ``python -m speedbench_plugin.clientcost``).

One vLLM server, the same token ids from every client, each client run in its own process tree
and interleaved with the others. While a client runs, the server's generation counter and the
client tree's CPU time are sampled together; the figure is the CPU per output token inside the
steady-state window (from 2 % of the run's tokens to the last one), so start-up (imports, a
tokenizer, connection set-up) and the report written after the last token stay out of it.

* :mod:`.window`: the sampling and the steady-state window (pure arithmetic, tested).
* :mod:`.clients`: the clients (the ``openai`` engine in one process or several, ``vllm bench
  serve``, the in-process ``vllm`` engine through the throughput bench) and their prompts.
* :mod:`.__main__`: the runs, the table and ``summary.{json,md}``.
"""
