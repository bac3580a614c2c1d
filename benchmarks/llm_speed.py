"""How fast is the local LLM baseline? Load time, prompt processing, generation speed, server overhead.

Prints one figure per line: converting the GGUF weights (only with --reconvert, into a scratch cache),
loading the cached model, processing the baseline's real turn-1 prompt, generating tokens/s for each
thread count, then for each compute type with one and three conversations batched, one chat completion
through the loopback server with the ``openai`` client, and the cost
of one sandboxed program run (what each judge pays per call). Run on an idle machine for clean numbers;
the load average is printed beside them.

    python benchmarks/llm_speed.py --threads 1,2 --tokens 64
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="Sum_All")
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    parser.add_argument("--tokens", type=int, default=64, help="tokens generated per measurement")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--reconvert", action="store_true", help="also time the one-off GGUF conversion")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")

    import importlib

    start = time.perf_counter()
    import torch

    importlib.import_module("transformers")
    print(f"import torch + transformers: {time.perf_counter() - start:.1f} s")

    from mips import llm, llm_server, sandbox
    from mips.data import dataset_for
    from mips.tasks import get_task

    spec = llm_server.local_model(args.model)
    if args.reconvert:
        with tempfile.TemporaryDirectory() as scratch:
            old = os.environ.get("MIPS_CACHE")
            os.environ["MIPS_CACHE"] = scratch
            try:
                _, sec = timed(llm_server.convert, spec)
            finally:
                if old is None:
                    os.environ.pop("MIPS_CACHE")
                else:
                    os.environ["MIPS_CACHE"] = old
        print(f"GGUF -> safetensors conversion (one-off): {sec:.1f} s")

    llm_server.convert(spec)
    model, sec = timed(llm_server.ChatModel, args.model, "cpu", None)
    print(f"load from the cached safetensors folder: {sec:.1f} s")

    task = get_task(args.task)
    rows = llm.prompt_rows(task, dataset_for(task, "smoke"))
    messages = [{"role": "system", "content": llm.SYSTEM_PROMPT},
                {"role": "user", "content": llm.formula_prompt(rows)}]
    ids = model.prompt_ids(messages)
    print(f"turn-1 prompt of {args.task}: {ids.shape[1]} tokens")
    for threads in [int(t) for t in args.threads.split(",") if t]:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            prefill = min(timed(model.model, ids, logits_to_keep=1)[1] for _ in range(args.repeats))
            gen = []
            for _ in range(args.repeats):
                _, s = timed(model.model.generate, ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=args.tokens, min_new_tokens=args.tokens,
                             pad_token_id=model.tokenizer.eos_token_id, temperature=None, top_p=None,
                             top_k=None)
                gen.append(s)
        decode = (min(gen) - prefill) / args.tokens
        print(f"threads={threads}: prompt {ids.shape[1] / prefill:6.0f} tokens/s ({prefill:.2f} s), "
              f"generation {1 / decode:5.1f} tokens/s ({args.tokens} tokens after the prompt)")

    torch.set_num_threads(1)
    for dtype in llm_server.DTYPES:
        typed = llm_server.ChatModel(args.model, "cpu", 1, dtype)
        for batch in (1, 3):
            typed.complete_batch([messages] * batch, max_tokens=8, temperature=0)      # warm-up
            runs = [typed.complete_batch([messages] * batch, max_tokens=args.tokens, temperature=1.0,
                                         seeds=[s] * batch)
                    for s in range(args.repeats)]
            tokens = [sum(c.completion_tokens for c in r) / r[0].seconds for r in runs]
            print(f"{dtype:>8}, 1 thread, batch of {batch}: {max(tokens):5.1f} tokens/s in all "
                  f"(sampled, T=1, prompt included)")

    if llm_server.llama_cpp_available():
        fast, sec = timed(llm_server.LlamaCppChatModel, args.model, 1)
        print(f"llama.cpp engine: load {sec:.1f} s")
        fast.complete(messages, max_tokens=1, temperature=0)       # warm-up; each request starts afresh
        one, prefill = timed(fast.complete, messages, max_tokens=1, temperature=0)
        print(f"llama.cpp, 1 thread: prompt {one.prompt_tokens / prefill:6.0f} tokens/s ({prefill:.2f} s)")
        runs = [fast.complete(messages, max_tokens=args.tokens, temperature=1.0, seed=s) for s in range(args.repeats)]
        rate = max(c.completion_tokens / c.seconds for c in runs)
        print(f"llama.cpp, 1 thread: {rate:5.1f} tokens/s (sampled, T=1, prompt included)")
    else:
        print("llama.cpp engine: not installed (`make llama` builds it)")

    import openai

    with llm_server.ChatServer(model) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="local", max_retries=0, timeout=600)
        resp, sec = timed(client.chat.completions.create, model=args.model, messages=messages,
                          max_tokens=args.tokens, temperature=0)
        n = resp.usage.completion_tokens
        print(f"one chat completion via the loopback server: {n} tokens in {sec:.2f} s "
              f"({n / sec:.1f} tokens/s including the prompt)")

    _, sec = timed(sandbox.run_program, "def f(xs):\n    return xs\n", [[1, 2, 3]])
    _, sec2 = timed(sandbox.run_program, "def f(xs):\n    return xs\n", [[1, 2, 3]])
    print(f"one sandboxed program run: {min(sec, sec2) * 1000:.0f} ms "
          f"(isolation: {sandbox.isolation_report()})")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
