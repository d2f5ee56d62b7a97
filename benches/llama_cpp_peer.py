"""llama.cpp's own prompt throughput on the prompts an `evalr run --model local` sent (issue 16).

Reads RUN/outputs.jsonl of an evalr run on the embedded model, renders each row's call the way
evalr's local backend does (llama.cpp's built-in "gemma" chat template through llama.cpp's own
`llama_chat_apply_template`, a final assistant message continued rather than closed, one BOS),
and evaluates it with llama-cpp-python: the prompt decoded with the KV prefix shared with the
previous row kept (what `Llama.generate` does), the last token in the same batch, then the
options' first-token log-probabilities read from the last position through a log-softmax over
the whole vocabulary (the work evalr does to record every option's log-probability). Prints
rows/s over the whole loop and between the first and the last row's end (what evalr's
`finished_at` times measure), decoded tokens/s, and how often the argmax agrees with evalr's
recorded choice (a check that both evaluated the same prompts).

Usage: python3 benches/llama_cpp_peer.py MODEL.gguf RUN_FOLDER [THREADS] [--flash-attn]
"""

import ctypes
import json
import sys
import time

import llama_cpp
import numpy as np


def render(messages):
    head, partial = messages, None
    if messages and messages[-1]["role"] == "assistant":
        head, partial = messages[:-1], messages[-1]["content"]
    chat = (llama_cpp.llama_chat_message * len(head))()
    keep = []
    for i, m in enumerate(head):
        role = "system" if m["role"] == "developer" else m["role"]
        r, c = role.encode(), m["content"].encode()
        keep += [r, c]
        chat[i].role, chat[i].content = r, c
    size = 1 << 16
    while True:
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_chat_apply_template(b"gemma", chat, len(head), True, buf, size)
        if n < 0:
            sys.exit("llama_chat_apply_template failed")
        if n <= size:
            break
        size = n + 1
    text = buf.raw[:n].decode()
    return text + (partial or "")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    flash_attn = "--flash-attn" in sys.argv[1:]
    model_path, run = args[0], args[1]
    threads = int(args[2]) if len(args) > 2 else 2
    calls = []
    for line in open(f"{run}/outputs.jsonl"):
        record = json.loads(line)
        for call in record["calls"]:
            if call.get("options"):
                calls.append((call["messages"], call["options"], call.get("chosen")))
    llm = llama_cpp.Llama(
        model_path,
        n_ctx=8192,
        n_batch=2048,
        n_ubatch=512,
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=False,
        flash_attn=flash_attn,
        verbose=False,
    )
    bos = llm.token_bos()
    prompts = []
    def tokenize(text):
        tokens = llm.tokenize(text.encode(), add_bos=False, special=True)
        if not tokens or tokens[0] != bos:
            tokens.insert(0, bos)
        return tokens

    for messages, options, value in calls:
        # As evalr does: prompt and option tokenized as one text ("Answer: " + "B" may end in
        # the one token " B"), the prompt cut where the first option's tokens begin.
        text = render(messages)
        tokens = tokenize(text)
        wholes = [tokenize(text + o) for o in options]
        shared = min(
            next((i for i, (a, b) in enumerate(zip(tokens, w)) if a != b), min(len(tokens), len(w)))
            for w in wholes
        )
        prompts.append((tokens[:shared], [w[shared] for w in wholes], value))

    decoded = 0
    agree = 0
    ends = []
    start = time.perf_counter()
    for tokens, firsts, value in prompts:
        prefix = 0
        for a, b in zip(llm.input_ids[: llm.n_tokens], tokens):
            if a != b:
                break
            prefix += 1
        prefix = min(prefix, len(tokens) - 1)  # the last token is decoded again for its logits
        llm.n_tokens = prefix
        llm.eval(tokens[prefix:])
        decoded += len(tokens) - prefix
        logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),))
        row = logits.astype(np.float64)
        top = row.max()
        log_norm = top + np.log(np.exp(row - top).sum())
        logprobs = [row[t] - log_norm for t in firsts]
        agree += int(np.argmax(logprobs)) == value
        ends.append(time.perf_counter())
    seconds = time.perf_counter() - start
    n = len(prompts)
    print(
        json.dumps(
            {
                "rows": n,
                "seconds": round(seconds, 3),
                "rows_per_s": round(n / seconds, 3),
                # Rows 2..n over the time between the first and the last row's end.
                "rows_per_s_after_first": round((n - 1) / (ends[-1] - ends[0]), 3),
                "decoded_tokens": decoded,
                "decoded_tokens_per_s": round(decoded / seconds, 1),
                "prompt_tokens": sum(len(p[0]) for p in prompts),
                "agrees_with_evalr": agree,
                "threads": threads,
                "flash_attn": flash_attn,
                "system": llama_cpp.llama_print_system_info().decode().strip(),
            }
        )
    )


if __name__ == "__main__":
    main()
