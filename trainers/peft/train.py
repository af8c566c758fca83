#!/usr/bin/env python3
"""LoRA / QLoRA fine-tuning of a causal language model on a downshift export.

downshift runs this script as a subprocess on a GPU host (trainer "peft"). It reads a
dataset directory written by `downshift export --format openai` (train.jsonl,
validation.jsonl, eval.jsonl, manifest.json), trains a LoRA adapter with transformers +
peft in a plain PyTorch loop, and writes the adapter, metrics.json and loss.csv to --out.

It is not a general training framework: one process, one device, no resumption, no
distributed training. See README.md next to it for the flags, the chat template and the
JSON-lines protocol.

Protocol: stdout carries only JSON objects, one per line ({"event": "start" | "step" |
"eval" | "done" | "error" | "cancelled" | "dry_run", ...}); everything for humans goes to
stderr. Exit codes: 0 ok, 1 training failed, 2 invalid data or configuration, 3 the host
lacks something (torch, transformers, peft, bitsandbytes for --qlora, CUDA for
--device cuda), 143 cancelled by SIGTERM.

--dry-run validates the data and the hyperparameters and prints one summary object
without importing torch, transformers or peft: those are imported lazily inside the
functions that train.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import json
import math
import os
import platform
import random
import re
import signal
import sys
import time

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_ENVIRONMENT = 3
EXIT_CANCELLED = 143

SPLITS = ("train", "validation", "eval")
ROLES = ("system", "user", "assistant", "tool")
TOP_LEVEL_KEYS = {"messages", "tools", "parallel_tool_calls"}
MESSAGE_KEYS = {"role", "content", "name", "tool_calls", "tool_call_id", "weight", "refusal"}
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_REPORTED_ERRORS = 50

# The simple chat template (README.md, "Chat template"). Role headers and the end marker
# are plain text, so any tokenizer can encode them; the byte tokenizer sees them as bytes.
END = "<|end|>"
TOOLS_HEADER = (
    "# Tools\n"
    'To call a tool, write <tool_call>{"name": NAME, "arguments": {...}}</tool_call>.\n'
)


class Invalid(Exception):
    """Invalid data or configuration: exit code 2."""


class Environment(Exception):
    """The host lacks a package or a device: exit code 3."""


class Cancelled(Exception):
    """SIGTERM arrived: exit code 143."""


def log(msg: str) -> None:
    """Writes one human line to stderr."""
    print(time.strftime("%H:%M:%S ") + msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# Dataset validation: the OpenAI chat fine-tuning format, line by line.
# ---------------------------------------------------------------------------------------


class Problems:
    """Collects errors (fatal) and warnings (counted by kind) while reading the data."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.error_count = 0
        self.warnings: dict[str, dict] = {}

    def error(self, where: str, msg: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(f"{where}: {msg}")

    def warn(self, where: str, msg: str) -> None:
        w = self.warnings.setdefault(msg, {"message": msg, "count": 0, "first": where})
        w["count"] += 1

    def warning_list(self) -> list[dict]:
        return list(self.warnings.values())


class Message:
    """One validated message; content is text or None, tool_calls (id, name, arguments)."""

    __slots__ = ("role", "content", "name", "tool_calls", "tool_call_id")

    def __init__(self, role, content, name=None, tool_calls=None, tool_call_id=None):
        self.role = role
        self.content = content
        self.name = name
        self.tool_calls = tool_calls or []
        self.tool_call_id = tool_call_id


class Example:
    """One validated line: messages ending with the assistant target, and the tools."""

    __slots__ = ("messages", "tools", "where")

    def __init__(self, messages: list[Message], tools: list[dict], where: str):
        self.messages = messages
        self.tools = tools
        self.where = where


def _content_text(content, where: str, problems: Problems):
    """Returns the text of a message's content (a string, text parts, or None)."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                problems.error(f"{where}.content[{i}]", 'only {"type": "text", "text": "..."} parts are supported')
                return None
            texts.append(part["text"])
        return "".join(texts)
    problems.error(f"{where}.content", f"must be a string, an array of text parts or null, got {_kind(content)}")
    return None


def _kind(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def _validate_tools(tools, where: str, problems: Problems) -> list[dict] | None:
    if tools is None:
        return []
    if not isinstance(tools, list):
        problems.error(f"{where}: tools", f"must be an array, got {_kind(tools)}")
        return None
    out = []
    ok = True
    for i, t in enumerate(tools):
        p = f"{where}: tools[{i}]"
        if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(t.get("function"), dict):
            problems.error(p, 'must be {"type": "function", "function": {...}}')
            ok = False
            continue
        fn = t["function"]
        name = fn.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            problems.error(f"{p}.function.name", f"{name!r} is not a valid function name ([A-Za-z0-9_-]{{1,64}})")
            ok = False
        if "parameters" in fn and not isinstance(fn["parameters"], dict):
            problems.error(f"{p}.function.parameters", f"must be a JSON schema object, got {_kind(fn['parameters'])}")
            ok = False
        if "description" in fn and not isinstance(fn["description"], str):
            problems.error(f"{p}.function.description", f"must be a string, got {_kind(fn['description'])}")
            ok = False
        out.append(fn)
    return out if ok else None


def _validate_tool_calls(calls, p: str, tool_names: set, problems: Problems):
    """Validates an assistant's tool_calls; returns [(id, name, arguments object)] or None."""
    if not isinstance(calls, list) or not calls:
        problems.error(f"{p}.tool_calls", "must be a non-empty array when present")
        return None
    out = []
    for j, c in enumerate(calls):
        q = f"{p}.tool_calls[{j}]"
        if not isinstance(c, dict):
            problems.error(q, f"must be an object, got {_kind(c)}")
            return None
        cid = c.get("id")
        if not isinstance(cid, str) or not cid:
            problems.error(f"{q}.id", "must be a non-empty string")
            return None
        if c.get("type", "function") != "function":
            problems.error(f"{q}.type", f'must be "function", got {c.get("type")!r}')
            return None
        fn = c.get("function")
        if not isinstance(fn, dict):
            problems.error(f"{q}.function", f"must be an object, got {_kind(fn)}")
            return None
        name = fn.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            problems.error(f"{q}.function.name", f"{name!r} is not a valid function name")
            return None
        args = fn.get("arguments")
        if not isinstance(args, str):
            problems.error(f"{q}.function.arguments", f"must be a string holding JSON, got {_kind(args)}")
            return None
        try:
            parsed = json.loads(args)
        except ValueError as e:
            problems.error(f"{q}.function.arguments", f"is not valid JSON: {e}")
            return None
        if not isinstance(parsed, dict):
            problems.error(f"{q}.function.arguments", f"must hold a JSON object, got {_kind(parsed)}")
            return None
        if tool_names and name not in tool_names:
            problems.warn(q, "a tool call names a function that is not in the line's tools")
        out.append((cid, name, parsed))
    return out


def validate_example(obj, where: str, problems: Problems) -> Example | None:
    """Checks one parsed line against the OpenAI chat fine-tuning rules.

    Errors name the file, the line and the JSON path. Returns None when the line is invalid.
    """
    if not isinstance(obj, dict):
        problems.error(where, f"must be a JSON object, got {_kind(obj)}")
        return None
    for key in obj:
        if key not in TOP_LEVEL_KEYS:
            problems.warn(where, f"unknown top-level key {key!r} ignored")
    tools = _validate_tools(obj.get("tools"), where, problems)
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        problems.error(f"{where}: messages", "must be a non-empty array")
        return None
    if tools is None:
        return None
    tool_names = {t["name"] for t in tools}
    seen_call_ids: set[str] = set()
    out: list[Message] = []
    before = problems.error_count
    for i, m in enumerate(messages):
        p = f"{where}: messages[{i}]"
        if not isinstance(m, dict):
            problems.error(p, f"must be an object, got {_kind(m)}")
            continue
        role = m.get("role")
        if role not in ROLES:
            problems.error(f"{p}.role", f"{role!r} is not one of {', '.join(ROLES)}")
            continue
        for key in m:
            if key not in MESSAGE_KEYS:
                problems.warn(p, f"unknown message key {key!r} ignored")
        content = _content_text(m.get("content"), p, problems)
        name = m.get("name")
        if name is not None and not isinstance(name, str):
            problems.error(f"{p}.name", f"must be a string, got {_kind(name)}")
        if "tool_calls" in m and m["tool_calls"] is not None and role != "assistant":
            problems.error(f"{p}.tool_calls", f"only assistant messages carry tool_calls, this one is {role!r}")
            continue
        if role in ("system", "user"):
            if not isinstance(content, str):
                problems.error(f"{p}.content", f"a {role} message needs text content")
                continue
            out.append(Message(role, content, name=name))
        elif role == "tool":
            cid = m.get("tool_call_id")
            if not isinstance(cid, str) or not cid:
                problems.error(f"{p}.tool_call_id", "a tool message needs the id of the call it answers")
                continue
            if cid not in seen_call_ids:
                problems.error(f"{p}.tool_call_id", f"{cid!r} answers no earlier assistant tool call")
                continue
            if not isinstance(content, str):
                problems.error(f"{p}.content", "a tool message needs text content")
                continue
            out.append(Message(role, content, name=name, tool_call_id=cid))
        else:  # assistant
            calls = []
            if m.get("tool_calls") is not None:
                calls = _validate_tool_calls(m["tool_calls"], p, tool_names, problems)
                if calls is None:
                    # Keep the ids anyway so the tool messages answering them raise no second error.
                    raw = m["tool_calls"] if isinstance(m["tool_calls"], list) else []
                    seen_call_ids.update(c["id"] for c in raw if isinstance(c, dict) and isinstance(c.get("id"), str))
                    continue
                seen_call_ids.update(c[0] for c in calls)
            if not calls and not content:
                problems.error(p, "an assistant message needs content or tool_calls")
                continue
            if "weight" in m and m["weight"] not in (0, 1):
                problems.error(f"{p}.weight", f"must be 0 or 1, got {m['weight']!r}")
                continue
            out.append(Message(role, content, name=name, tool_calls=calls))
    if problems.error_count > before:
        return None
    last = messages[-1]
    if last.get("role") != "assistant":
        problems.error(
            f"{where}: messages[{len(messages) - 1}]",
            f"the last message must be the assistant target, got role {last.get('role')!r}",
        )
        return None
    if last.get("weight") == 0:
        problems.error(f"{where}: messages[{len(messages) - 1}].weight", "the target has weight 0: nothing to learn")
        return None
    if not any(msg.role in ("user", "tool") for msg in out[:-1]):
        problems.error(f"{where}: messages", "needs a user or tool message before the assistant target")
        return None
    return Example(out, tools, where)


def read_split(path: str, problems: Problems) -> tuple[list[Example], str]:
    """Reads and validates one JSON-lines file; returns the examples and the file's sha256."""
    name = os.path.basename(path)
    examples = []
    with open(path, "rb") as f:
        raw = f.read()
    digest = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        problems.error(name, f"is not UTF-8: {e}")
        return [], digest
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for n, line in enumerate(lines, start=1):
        where = f"{name}:{n}"
        if not line.strip():
            problems.error(where, "empty line")
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            problems.error(where, f"invalid JSON: {e}")
            continue
        ex = validate_example(obj, where, problems)
        if ex is not None:
            examples.append(ex)
    return examples, digest


def read_dataset(data_dir: str, problems: Problems) -> dict:
    """Reads train (required), validation and eval (optional) and the manifest."""
    if not os.path.isdir(data_dir):
        raise Invalid(f"--data {data_dir}: not a directory")
    splits = {}
    for split in SPLITS:
        path = os.path.join(data_dir, split + ".jsonl")
        if not os.path.exists(path):
            if split == "train":
                raise Invalid(f"{path}: missing; --data must be a directory written by `downshift export --format openai`")
            problems.warn(f"--data {data_dir}", f"{split}.jsonl is missing" + ("; no validation loss" if split == "validation" else ""))
            continue
        examples, digest = read_split(path, problems)
        splits[split] = {"examples": examples, "sha256": digest, "path": path}
    if "train" in splits and not splits["train"]["examples"] and problems.error_count == 0:
        problems.error("train.jsonl", "holds no examples")
    manifest = None
    mpath = os.path.join(data_dir, "manifest.json")
    if os.path.exists(mpath):
        try:
            with open(mpath, encoding="utf-8") as f:
                manifest = json.load(f)
        except ValueError as e:
            problems.error("manifest.json", f"invalid JSON: {e}")
    else:
        problems.warn(f"--data {data_dir}", "manifest.json is missing")
    return {"splits": splits, "manifest": manifest}


# ---------------------------------------------------------------------------------------
# Chat template and tokenization.
# ---------------------------------------------------------------------------------------


def _assistant_body(m: Message) -> str:
    parts = []
    if m.content:
        parts.append(m.content)
    for _, name, args in m.tool_calls:
        parts.append("<tool_call>" + json.dumps({"name": name, "arguments": args}, ensure_ascii=False) + "</tool_call>")
    return "\n".join(parts)


def render_simple(ex: Example) -> tuple[str, str]:
    """Renders an example with the simple template; returns (prompt, target).

    Each message is "<|role|>\\n" + body + "<|end|>\\n"; the tools, one JSON object per line,
    follow the first system message (or form one); tool calls are
    <tool_call>{"name": ..., "arguments": {...}}</tool_call> lines. The prompt ends with
    "<|assistant|>\\n"; the target is the final assistant body plus "<|end|>".
    """
    tools_block = ""
    if ex.tools:
        tools_block = TOOLS_HEADER + "\n".join(json.dumps(t, ensure_ascii=False) for t in ex.tools)
    parts = []
    placed = not tools_block
    for m in ex.messages[:-1]:
        body = _assistant_body(m) if m.role == "assistant" else (m.content or "")
        if m.role == "system" and not placed:
            body = body + "\n\n" + tools_block
            placed = True
        parts.append(f"<|{m.role}|>\n{body}{END}\n")
    if not placed:
        parts.insert(0, f"<|system|>\n{tools_block}{END}\n")
    parts.append("<|assistant|>\n")
    return "".join(parts), _assistant_body(ex.messages[-1]) + END


def _hf_messages(ex: Example) -> list[dict]:
    """The example as the dicts transformers chat templates expect (arguments as objects)."""
    out = []
    for m in ex.messages:
        d = {"role": m.role, "content": m.content or ""}
        if m.tool_calls:
            d["tool_calls"] = [
                {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
                for cid, name, args in m.tool_calls
            ]
        if m.tool_call_id:
            d["tool_call_id"] = m.tool_call_id
        if m.name:
            d["name"] = m.name
        out.append(d)
    return out


class ByteTokenizer:
    """UTF-8 bytes are ids 0-255; pad, bos and eos follow; the vocabulary is padded to 264.

    Chosen over a BPE trained on the data because it needs no library and no training
    step, gives the same ids on every host, and lets --dry-run count tokens exactly
    without importing anything. Its cost is length: about four times the tokens of a BPE,
    which only matters for how much of a long prompt survives --max-length.
    """

    name = "byte"
    pad_id = 256
    bos_id = 257
    eos_id = 258
    vocab_size = 264  # 259 used; a multiple of 8 for the matrix units

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))


class HFTokenizer:
    """A transformers tokenizer behind the same small surface as ByteTokenizer."""

    def __init__(self, tok):
        self.tok = tok
        self.name = type(tok).__name__
        self.bos_id = tok.bos_token_id
        self.eos_id = tok.eos_token_id
        pad = tok.pad_token_id
        self.pad_id = pad if pad is not None else (self.eos_id if self.eos_id is not None else 0)
        self.vocab_size = len(tok)

    def encode(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"])


class Encoded:
    """Token ids of one example; the last n_target ids are the target."""

    __slots__ = ("ids", "n_target", "truncated", "full_length")

    def __init__(self, ids, n_target, truncated, full_length):
        self.ids = ids
        self.n_target = n_target
        self.truncated = truncated
        self.full_length = full_length


def _split_ids(tok, prompt: str, target: str) -> tuple[list[int], list[int]]:
    """Tokenizes prompt+target once so the boundary merges as it will at inference."""
    pre = tok.encode(prompt)
    full = tok.encode(prompt + target)
    if full[: len(pre)] == pre:
        return pre, full[len(pre):]
    return pre, tok.encode(target)


def encode_example(ex: Example, tok, template: str, max_length: int) -> Encoded | None:
    """Renders and tokenizes an example, truncating the prompt from the left.

    Returns None when the target alone does not fit in max_length.
    """
    if template == "model":
        conv = _hf_messages(ex)
        tools = [{"type": "function", "function": t} for t in ex.tools] or None
        # return_dict=False: transformers 5 may default it to True, which clashes with tokenize=False.
        prompt = tok.tok.apply_chat_template(conv[:-1], tools=tools, add_generation_prompt=True,
                                             tokenize=False, return_dict=False)
        full = tok.tok.apply_chat_template(conv, tools=tools, tokenize=False, return_dict=False)
        if not full.startswith(prompt):
            raise Invalid(
                f"{ex.where}: the model's chat template renders the history differently once the target is "
                "added, so the target cannot be isolated; use --chat-template simple"
            )
        pre, tgt = _split_ids(tok, prompt, full[len(prompt):])
    else:
        prompt, target = render_simple(ex)
        pre, tgt = _split_ids(tok, prompt, target)
        if tok.bos_id is not None:
            pre = [tok.bos_id] + pre
        if tok.eos_id is not None:
            tgt = tgt + [tok.eos_id]
    full_length = len(pre) + len(tgt)
    if len(tgt) > max_length:
        return None
    truncated = full_length > max_length
    if truncated:
        keep = max_length - len(tgt)
        head = pre[:1] if (tok.bos_id is not None and pre and pre[0] == tok.bos_id and keep > 0) else []
        pre = head + (pre[len(pre) - (keep - len(head)):] if keep - len(head) > 0 else [])
    return Encoded(pre + tgt, len(tgt), truncated, full_length)


def encode_split(examples, tok, template, max_length, too_long, problems, split) -> tuple[list[Encoded], dict]:
    """Encodes a split and summarises its token counts."""
    out = []
    stats = {"examples": len(examples), "tokens": 0, "target_tokens": 0, "longest_tokens": 0,
             "max_target_tokens": 0, "truncated": 0, "too_long": 0}
    for ex in examples:
        enc = encode_example(ex, tok, template, max_length)
        if enc is None:
            stats["too_long"] += 1
            msg = f"the target alone is over --max-length {max_length} tokens"
            if too_long == "error":
                problems.error(ex.where, msg)
            else:
                problems.warn(ex.where, msg + "; example skipped")
            continue
        stats["tokens"] += len(enc.ids)
        stats["target_tokens"] += enc.n_target
        stats["longest_tokens"] = max(stats["longest_tokens"], enc.full_length)
        stats["max_target_tokens"] = max(stats["max_target_tokens"], enc.n_target)
        stats["truncated"] += int(enc.truncated)
        out.append(enc)
    stats["tool_call_targets"] = sum(1 for ex in examples if ex.messages[-1].tool_calls)
    if split == "train" and examples and not out:
        problems.error("train.jsonl", "no example fits --max-length")
    return out, stats


# ---------------------------------------------------------------------------------------
# Flags.
# ---------------------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="train.py",
        description="LoRA/QLoRA fine-tuning on a `downshift export --format openai` directory.",
    )
    p.add_argument("--data", required=True, help="dataset directory (train.jsonl, validation.jsonl, eval.jsonl, manifest.json)")
    p.add_argument("--out", help="output directory for the adapter, metrics.json and loss.csv (required unless --dry-run)")
    model = p.add_mutually_exclusive_group()
    model.add_argument("--base", help="base model: a Hugging Face id or a local path, loaded with from_pretrained")
    model.add_argument("--tiny-random-llama", action="store_true",
                       help="build a small randomly initialised Llama from a config and use the byte tokenizer; downloads nothing")
    p.add_argument("--tiny-hidden", type=int, default=256)
    p.add_argument("--tiny-layers", type=int, default=4)
    p.add_argument("--tiny-heads", type=int, default=4)
    p.add_argument("--tiny-intermediate", type=int, default=688)
    p.add_argument("--qlora", action="store_true", help="load the base in 4-bit NF4 through bitsandbytes")
    p.add_argument("--rank", type=int, default=16, help="LoRA rank r")
    p.add_argument("--alpha", type=float, default=32, help="LoRA alpha (scale is alpha/rank)")
    p.add_argument("--dropout", type=float, default=0.05, help="LoRA dropout")
    p.add_argument("--target-modules", default="q_proj,k_proj,v_proj,o_proj", help="comma-separated module names")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=None, help="cap on optimizer steps (default: epochs decide)")
    p.add_argument("--lr", type=float, default=2e-4, help="peak learning rate")
    p.add_argument("--warmup-ratio", type=float, default=0.03, help="share of steps with linear warmup; then linear decay to 0")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping; 0 turns it off")
    p.add_argument("--batch-size", type=int, default=8, help="examples per micro-batch")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    p.add_argument("--max-length", type=int, default=1024, help="tokens per example; the prompt is cut from the left")
    p.add_argument("--too-long", choices=("skip", "error"), default="skip",
                   help="what to do with an example whose target alone exceeds --max-length")
    p.add_argument("--chat-template", choices=("auto", "simple", "model"), default="auto",
                   help="simple: the documented template; model: the tokenizer's own; auto: model when it has one")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--eval-every", type=int, default=50, help="validation loss every N steps (and at 0 and the end); 0: only at the end")
    p.add_argument("--max-eval-examples", type=int, default=0, help="cap on validation examples per evaluation; 0: all")
    p.add_argument("--log-every", type=int, default=10, help="a step event every N steps")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="auto: bf16 on a GPU that supports it, else fp32")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    p.add_argument("--gradient-checkpointing", action="store_true", help="trade compute for activation memory")
    p.add_argument("--dry-run", action="store_true",
                   help="validate the data and the hyperparameters, print a summary, import no ML library")
    return p.parse_args(argv)


def check_config(args) -> list[str]:
    """Returns the configuration errors, each naming its flag."""
    errs = []

    def need(cond, msg):
        if not cond:
            errs.append(msg)

    need(args.dry_run or args.out, "--out is required unless --dry-run")
    need(args.dry_run or args.base or args.tiny_random_llama, "one of --base or --tiny-random-llama is required")
    need(args.rank >= 1, f"--rank must be at least 1, got {args.rank}")
    need(args.alpha > 0, f"--alpha must be positive, got {args.alpha}")
    need(0 <= args.dropout < 1, f"--dropout must be in [0, 1), got {args.dropout}")
    need(args.epochs >= 1, f"--epochs must be at least 1, got {args.epochs}")
    need(args.max_steps is None or args.max_steps >= 1, f"--max-steps must be at least 1, got {args.max_steps}")
    need(0 < args.lr < 1, f"--lr must be in (0, 1), got {args.lr}")
    need(0 <= args.warmup_ratio < 1, f"--warmup-ratio must be in [0, 1), got {args.warmup_ratio}")
    need(args.weight_decay >= 0, f"--weight-decay must not be negative, got {args.weight_decay}")
    need(args.max_grad_norm >= 0, f"--max-grad-norm must not be negative, got {args.max_grad_norm}")
    need(args.batch_size >= 1, f"--batch-size must be at least 1, got {args.batch_size}")
    need(args.grad_accum >= 1, f"--grad-accum must be at least 1, got {args.grad_accum}")
    need(16 <= args.max_length <= 1 << 20, f"--max-length must be in [16, 1048576], got {args.max_length}")
    need(args.eval_every >= 0, f"--eval-every must not be negative, got {args.eval_every}")
    need(args.log_every >= 1, f"--log-every must be at least 1, got {args.log_every}")
    need(args.max_eval_examples >= 0, f"--max-eval-examples must not be negative, got {args.max_eval_examples}")
    targets = [t for t in args.target_modules.split(",") if t.strip()]
    need(targets and all(re.match(r"^[A-Za-z0-9_.]+$", t.strip()) for t in targets),
         f"--target-modules must be comma-separated module names, got {args.target_modules!r}")
    if args.tiny_random_llama:
        need(args.tiny_hidden >= 8 and args.tiny_layers >= 1 and args.tiny_heads >= 1 and args.tiny_intermediate >= 8,
             "--tiny-hidden, --tiny-layers, --tiny-heads and --tiny-intermediate must be positive")
        need(args.tiny_heads >= 1 and args.tiny_hidden % max(args.tiny_heads, 1) == 0,
             f"--tiny-hidden {args.tiny_hidden} must be a multiple of --tiny-heads {args.tiny_heads}")
        need(not args.qlora, "--qlora needs --base: a randomly initialised model has nothing to quantize")
        need(args.chat_template != "model", "--chat-template model needs --base: the byte tokenizer has no chat template")
    return errs


def hyperparameters(args) -> dict:
    return {
        "rank": args.rank, "alpha": args.alpha, "dropout": args.dropout,
        "target_modules": [t.strip() for t in args.target_modules.split(",") if t.strip()],
        "epochs": args.epochs, "max_steps": args.max_steps, "lr": args.lr, "warmup_ratio": args.warmup_ratio,
        "weight_decay": args.weight_decay, "max_grad_norm": args.max_grad_norm, "batch_size": args.batch_size,
        "grad_accum": args.grad_accum, "max_length": args.max_length, "seed": args.seed, "qlora": args.qlora,
        "gradient_checkpointing": args.gradient_checkpointing,
    }


def plan_steps(n_train: int, args) -> tuple[int, int]:
    """Returns (optimizer steps per epoch, total optimizer steps)."""
    per_epoch = math.ceil(math.ceil(n_train / args.batch_size) / args.grad_accum) if n_train else 0
    total = per_epoch * args.epochs
    if args.max_steps is not None:
        total = min(total, args.max_steps)
    return per_epoch, total


def report_problems(problems: Problems) -> None:
    for e in problems.errors:
        print("error: " + e, file=sys.stderr)
    if problems.error_count > len(problems.errors):
        print(f"error: ... and {problems.error_count - len(problems.errors)} more", file=sys.stderr)
    for w in problems.warning_list():
        print(f"warning: {w['first']}: {w['message']} ({w['count']}x)", file=sys.stderr)


# ---------------------------------------------------------------------------------------
# Dry run: no torch, no transformers, no peft.
# ---------------------------------------------------------------------------------------


def dry_run(args, out) -> int:
    problems = Problems()
    config_errors = check_config(args)
    for e in config_errors:
        problems.error("config", e)
    data = {"splits": {}, "manifest": None}
    try:
        data = read_dataset(args.data, problems)
    except Invalid as e:
        problems.error("data", str(e))
    except OSError as e:
        problems.error("data", f"cannot read: {e}")
    # With --tiny-random-llama the byte tokenizer is the real one, so counts are exact.
    # Otherwise the real tokenizer is not loaded (that would import transformers); UTF-8
    # bytes of the simple template stand in, an overestimate for BPE tokenizers, and an
    # over-length target is a warning rather than an error.
    exact = bool(args.tiny_random_llama)
    tok = ByteTokenizer()
    files = {}
    n_train = 0
    for split, s in data["splits"].items():
        _, stats = encode_split(s["examples"], tok, "simple", args.max_length,
                                args.too_long if exact else "skip", problems, split if exact else "")
        stats["sha256"] = s["sha256"]
        files[split + ".jsonl"] = stats
        if split == "train":
            n_train = stats["examples"] - stats["too_long"]
    per_epoch, total = plan_steps(n_train, args)
    deps = {m: importlib.util.find_spec(m) is not None for m in ("torch", "transformers", "peft", "bitsandbytes")}
    if args.qlora and not deps["bitsandbytes"]:
        problems.warn("config", "--qlora: bitsandbytes is not installed on this host; training here would exit 3")
    ok = problems.error_count == 0
    summary = {
        "event": "dry_run",
        "ok": ok,
        "data": args.data,
        "files": files,
        "manifest": {"present": data["manifest"] is not None,
                     "keys": sorted(data["manifest"]) if isinstance(data["manifest"], dict) else []},
        "tokenizer": "byte" if exact else "utf8-bytes-estimate",
        "chat_template": "simple" if exact or args.chat_template != "model" else "model (rendered as simple for counting)",
        "model": "tiny-random-llama" if args.tiny_random_llama else args.base,
        "hyperparameters": hyperparameters(args),
        "plan": {"steps_per_epoch": per_epoch, "total_steps": total},
        "dependencies": deps,
        "errors": problems.errors,
        "error_count": problems.error_count,
        "warnings": problems.warning_list(),
    }
    report_problems(problems)
    out.write(json.dumps(summary) + "\n")
    out.flush()
    return EXIT_OK if ok else EXIT_INVALID


# ---------------------------------------------------------------------------------------
# Training: everything below imports torch, transformers and peft lazily.
# ---------------------------------------------------------------------------------------


class Events:
    """Writes protocol events, one JSON object per line, to the saved stdout."""

    def __init__(self, stream):
        self.stream = stream
        self.t0 = time.time()

    def emit(self, event: str, **fields) -> None:
        # NaN and infinities are not JSON; the driver reads them as null.
        fields = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in fields.items()}
        obj = {"event": event, **fields, "elapsed_s": round(time.time() - self.t0, 3)}
        self.stream.write(json.dumps(obj, default=str) + "\n")
        self.stream.flush()


def _import_ml(qlora: bool):
    """Imports the training libraries or raises Environment naming what is missing."""
    mods = {}
    for name in ("torch", "transformers", "peft"):
        try:
            mods[name] = __import__(name)
        except ImportError as e:
            raise Environment(f"{name} is not importable ({e}); install torch, transformers and peft on this host")
    if qlora:
        try:
            mods["bitsandbytes"] = __import__("bitsandbytes")
        except ImportError as e:
            raise Environment(f"--qlora needs bitsandbytes, which is not importable here ({e}); "
                              "install it or train without --qlora")
    return mods


def _version_tuple(v: str) -> tuple[int, ...]:
    nums = []
    for part in v.split(".")[:3]:
        m = re.match(r"\d+", part)
        nums.append(int(m.group()) if m else 0)
    return tuple(nums)


def _dtype_kwarg(transformers, dtype) -> dict:
    # transformers 4.56 renamed from_pretrained's torch_dtype to dtype; 5.x warns on the old name.
    if _version_tuple(transformers.__version__) >= (4, 56):
        return {"dtype": dtype}
    return {"torch_dtype": dtype}


def build_tiny_llama(args, torch, transformers, tok: ByteTokenizer):
    """A small Llama built from a config, randomly initialised from --seed: nothing is downloaded."""
    config = transformers.LlamaConfig(
        vocab_size=tok.vocab_size,
        hidden_size=args.tiny_hidden,
        intermediate_size=args.tiny_intermediate,
        num_hidden_layers=args.tiny_layers,
        num_attention_heads=args.tiny_heads,
        num_key_value_heads=args.tiny_heads,
        max_position_embeddings=max(2048, args.max_length),
        rms_norm_eps=1e-5,
        pad_token_id=tok.pad_id,
        bos_token_id=tok.bos_id,
        eos_token_id=tok.eos_id,
        tie_word_embeddings=False,
        use_cache=False,
    )
    torch.manual_seed(args.seed)
    model = transformers.LlamaForCausalLM(config)
    return model, config


def load_base(args, torch, transformers, device, dtype):
    """Loads --base with from_pretrained, in 4-bit NF4 when --qlora."""
    kwargs = _dtype_kwarg(transformers, dtype)
    if args.qlora:
        if device.type != "cuda":
            raise Environment("--qlora needs a CUDA device")
        kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype if dtype != torch.float32 else torch.bfloat16,
        )
        kwargs["device_map"] = {"": device.index or 0}
    model = transformers.AutoModelForCausalLM.from_pretrained(args.base, **kwargs)
    if not args.qlora:
        model.to(device)
    return model


def collate(batch: list[Encoded], pad_id: int, torch, device):
    """Right-pads a batch; labels are -100 outside the targets."""
    width = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.ids)
        row = torch.tensor(e.ids, dtype=torch.long)
        ids[i, :n] = row
        mask[i, :n] = 1
        labels[i, n - e.n_target:n] = row[n - e.n_target:]
    return ids.to(device), mask.to(device), labels.to(device)


def train(args, events: Events) -> int:
    t_start = time.time()
    # SIGTERM (downshift tune cancel) stops the loop at the next step boundary.
    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    problems = Problems()
    errs = check_config(args)
    if errs:
        raise Invalid("; ".join(errs))
    data = read_dataset(args.data, problems)
    if problems.error_count:
        report_problems(problems)
        raise Invalid(f"{problems.error_count} problem(s) in {args.data}; the first: {problems.errors[0]}")

    if args.tiny_random_llama:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    mods = _import_ml(args.qlora)
    torch, transformers, peft = mods["torch"], mods["transformers"], mods["peft"]

    random.seed(args.seed)
    torch.manual_seed(args.seed)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise Environment("--device cuda: CUDA is not available on this host")
    device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.manual_seed_all(args.seed)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    bf16_ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if args.precision == "bf16" and not bf16_ok:
        raise Environment("--precision bf16: this device does not support bfloat16")
    use_bf16 = args.precision == "bf16" or (args.precision == "auto" and bf16_ok)
    dtype = torch.bfloat16 if use_bf16 else torch.float32
    gpu_name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    log(f"device {device} ({gpu_name or platform.processor() or 'cpu'}), {'bf16' if use_bf16 else 'fp32'}; "
        f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")

    # Tokenizer and chat template.
    if args.tiny_random_llama:
        tok = ByteTokenizer()
        template = "simple"
    else:
        hf_tok = transformers.AutoTokenizer.from_pretrained(args.base)
        tok = HFTokenizer(hf_tok)
        has_template = bool(getattr(hf_tok, "chat_template", None))
        if args.chat_template == "model" and not has_template:
            raise Invalid(f"--chat-template model: {args.base}'s tokenizer has no chat template")
        template = "model" if args.chat_template == "model" or (args.chat_template == "auto" and has_template) else "simple"
    log(f"tokenizer {tok.name}, chat template {template}")

    splits = data["splits"]
    train_set, train_stats = encode_split(splits["train"]["examples"], tok, template, args.max_length,
                                          args.too_long, problems, "train")
    val_set, val_stats = [], None
    if "validation" in splits:
        val_set, val_stats = encode_split(splits["validation"]["examples"], tok, template, args.max_length,
                                          args.too_long, problems, "validation")
    report_problems(problems)
    if problems.error_count:
        raise Invalid(f"{problems.error_count} problem(s) after tokenization; the first: {problems.errors[0]}")
    if args.max_eval_examples:
        val_set = val_set[: args.max_eval_examples]

    # Model and adapter.
    tiny_config = None
    if args.tiny_random_llama:
        model, config = build_tiny_llama(args, torch, transformers, tok)
        model.to(device=device, dtype=dtype)
        tiny_config = config.to_dict()
    else:
        model = load_base(args, torch, transformers, device, dtype)
    if getattr(model, "config", None) is not None:
        model.config.use_cache = False
    if args.qlora:
        model = peft.prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=args.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    elif args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lora = peft.LoraConfig(
        r=args.rank,
        lora_alpha=int(args.alpha) if float(args.alpha).is_integer() else args.alpha,
        lora_dropout=args.dropout,
        target_modules=hyperparameters(args)["target_modules"],
        bias="none",
        task_type=peft.TaskType.CAUSAL_LM,
    )
    model = peft.get_peft_model(model, lora)
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    n_total = sum(p.numel() for p in model.parameters())
    log(f"LoRA r={args.rank} alpha={args.alpha} on {lora.target_modules}: {n_trainable:,} trainable of {n_total:,}")

    per_epoch, total_steps = plan_steps(len(train_set), args)
    warmup = int(total_steps * args.warmup_ratio)
    opt = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=args.weight_decay)

    def lr_lambda(step):  # linear warmup, then linear decay to 0 at total_steps
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
    autocast = (lambda: torch.autocast(device_type="cuda", dtype=torch.bfloat16)) if use_bf16 else None

    def forward(batch):
        ids, mask, labels = collate(batch, tok.pad_id, torch, device)
        if autocast is not None:
            with autocast():
                out = model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False)
        else:
            out = model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False)
        n_target = int((labels[:, 1:] != -100).sum().item())
        return out.loss, n_target, int(mask.sum().item())

    def evaluate():
        if not val_set:
            return None, 0
        model.eval()
        loss_sum, n_sum = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(val_set), args.batch_size):
                loss, n, _ = forward(val_set[i:i + args.batch_size])
                loss_sum += float(loss) * n
                n_sum += n
        model.train()
        return (loss_sum / n_sum if n_sum else None), n_sum

    events.emit("start", total_steps=total_steps, steps_per_epoch=per_epoch, train_examples=len(train_set),
                validation_examples=len(val_set), trainable_params=n_trainable, total_params=n_total,
                device=str(device), gpu=gpu_name, dtype="bf16" if use_bf16 else "fp32", chat_template=template,
                tokenizer=tok.name)

    rows = []  # [step, train_loss, val_loss]
    val0, val_tokens = evaluate()
    events.emit("eval", step=0, val_loss=val0, val_tokens=val_tokens)
    rows.append([0, None, val0])
    val_last, val_last_step = val0, 0

    model.train()
    rng = random.Random(args.seed)
    step, tokens_seen, target_tokens_seen = 0, 0, 0
    window_tokens, window_t0 = 0, time.time()
    losses: list[float] = []
    t_train = time.time()
    done = total_steps == 0
    while not done:
        order = list(range(len(train_set)))
        rng.shuffle(order)
        micro = [order[i:i + args.batch_size] for i in range(0, len(order), args.batch_size)]
        for g in range(0, len(micro), args.grad_accum):
            if stop["flag"]:
                raise Cancelled(step)
            group = micro[g:g + args.grad_accum]
            step_loss = 0.0
            for idxs in group:
                loss, n_target, n_tokens = forward([train_set[i] for i in idxs])
                (loss / len(group)).backward()
                step_loss += float(loss.detach()) / len(group)
                tokens_seen += n_tokens
                window_tokens += n_tokens
                target_tokens_seen += n_target
            if not math.isfinite(step_loss):
                raise RuntimeError(f"the training loss is {step_loss} at step {step + 1}; lower --lr")
            if args.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(trainable, args.max_grad_norm)
            lr = sched.get_last_lr()[0]
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            losses.append(step_loss)
            rows.append([step, step_loss, None])
            if step % args.log_every == 0 or step == total_steps:
                now = time.time()
                events.emit("step", step=step, epoch=round(step / per_epoch, 4), loss=step_loss, lr=lr,
                            tokens_per_s=round(window_tokens / max(now - window_t0, 1e-9), 1))
                window_tokens, window_t0 = 0, now
            if (args.eval_every and step % args.eval_every == 0) or step == total_steps:
                val_last, val_tokens = evaluate()
                val_last_step = step
                rows[-1][2] = val_last
                events.emit("eval", step=step, val_loss=val_last, val_tokens=val_tokens)
            if step >= total_steps:
                done = True
                break
    train_time = time.time() - t_train

    os.makedirs(args.out, exist_ok=True)
    adapter_dir = os.path.join(args.out, "adapter")
    # save_embedding_layers=False: the vocabulary is unchanged, and "auto" would ask the Hub.
    model.save_pretrained(adapter_dir, save_embedding_layers=False)
    if not args.tiny_random_llama:
        tok.tok.save_pretrained(adapter_dir)

    with open(os.path.join(args.out, "loss.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "train_loss", "val_loss"])
        for r in rows:
            w.writerow([r[0]] + ["" if v is None else f"{v:.6f}" for v in r[1:]])

    tail = losses[-min(len(losses), max(args.log_every, 10)):] if losses else []
    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "transformers": transformers.__version__, "peft": peft.__version__,
                "cuda": torch.version.cuda}
    if "bitsandbytes" in mods:
        versions["bitsandbytes"] = getattr(mods["bitsandbytes"], "__version__", "?")
    metrics = {
        "status": "succeeded",
        "train_loss": sum(tail) / len(tail) if tail else None,
        "train_loss_window": len(tail),
        "train_loss_first": losses[0] if losses else None,
        "val_loss": val_last,
        "val_loss_step": val_last_step,
        "val_loss_initial": val0,
        "steps": step,
        "epochs": round(step / per_epoch, 4) if per_epoch else 0,
        "train_examples": len(train_set),
        "validation_examples": len(val_set),
        "train_tokens": tokens_seen,
        "train_target_tokens": target_tokens_seen,
        "tokens_per_s": round(tokens_seen / max(train_time, 1e-9), 1),
        "train_time_s": round(train_time, 3),
        "wall_time_s": round(time.time() - t_start, 3),
        "device": str(device),
        "gpu": gpu_name,
        "dtype": "bf16" if use_bf16 else "fp32",
        "peak_gpu_memory_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
        "versions": versions,
        "hyperparameters": hyperparameters(args),
        "model": {"base": "tiny-random-llama" if args.tiny_random_llama else args.base, "tiny_config": tiny_config,
                  "trainable_params": n_trainable, "total_params": n_total},
        "tokenizer": tok.name,
        "chat_template": template,
        "data": {"dir": args.data, "train": train_stats, "validation": val_stats,
                 "sha256": {k + ".jsonl": v["sha256"] for k, v in splits.items()}},
        "adapter": adapter_dir,
    }
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2, default=str)
        f.write("\n")
    events.emit("done", step=step, train_loss=metrics["train_loss"], val_loss=val_last, out=args.out,
                adapter=adapter_dir, wall_time_s=metrics["wall_time_s"])
    log(f"done: {step} steps, train loss {metrics['train_loss']}, validation loss {val_last}, adapter in {adapter_dir}")
    return EXIT_OK


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.dry_run:
        return dry_run(args, sys.stdout)
    # Libraries sometimes print to stdout; keep the protocol stream for events alone by
    # giving it a private copy of fd 1 and pointing fd 1 (and sys.stdout) at stderr.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    events = Events(proto)
    try:
        return train(args, events)
    except Invalid as e:
        log(f"error: {e}")
        events.emit("error", code=EXIT_INVALID, message=str(e))
        return EXIT_INVALID
    except Environment as e:
        log(f"error: {e}")
        events.emit("error", code=EXIT_ENVIRONMENT, message=str(e))
        return EXIT_ENVIRONMENT
    except Cancelled as e:
        log(f"cancelled at step {e.args[0]}")
        events.emit("cancelled", step=e.args[0])
        return EXIT_CANCELLED
    except Exception as e:  # noqa: BLE001 - the driver needs one line, the traceback goes to stderr
        import traceback

        traceback.print_exc()
        events.emit("error", code=EXIT_FAILED, message=f"{type(e).__name__}: {e}")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
