"""Training and generation speed of dkp's NumPy transformer against the same model in PyTorch.

    python benchmarks/transformer_speed.py [--config transformer-small] [--threads N] [--steps 20] [--rounds 3]
                                           [--phases] [--gen-tokens 100] [--torch-attention sdpa|explicit]
    python benchmarks/transformer_speed.py --sweep [--json data/results/transformer_speed.json]

Training: a full step of the config's model (forward, the mean cross-entropy, backward, the clip of
the global gradient norm, AdamW's update), dkp's through the real trainer (`Trainer.train_epoch` over
exactly --steps windows of PTB's train split), PyTorch's on the same windows with autograd. The
PyTorch model is dkp's architecture exactly (`torch_model`): the same widths and heads, learned
positions, pre-LayerNorm blocks, GELU in its tanh approximation, the softmax tied to the embedding
with a bias of its own, dropout where dkp's forward applies it (on the embedding, the attention
weights and each residual branch), float32, AdamW with dkp's lr, betas, eps and weight decay on the
same parameters (every one of two or more dimensions: the matrices, the embedding, the positions),
the same clip; it starts from a copy of dkp's parameters, and the first window's loss without
dropout is printed for both (the same to float32 rounding). PyTorch's attention is
`scaled_dot_product_attention` by default (what nanoGPT calls), or with --torch-attention explicit
the same products and softmax written out. dkp and PyTorch alternate for --rounds rounds; words/s are
the medians, and dkp / PyTorch is the median (and range) of the rounds' ratios.

Generation: greedy, batch 1, --gen-tokens new tokens after an 8-token prompt (fewer if the context
would pass block_size), in tokens/s: dkp with its key/value cache (a forward of one token a step),
dkp re-running the whole sequence every step, and PyTorch re-running it (no_grad, eval mode).

With --phases, one more epoch of dkp splits its step's time among its parts (each part's own time,
not its callees'): attention products (qkv, proj), the attention itself (scores, mask, softmax,
dropout of the weights, weights @ v), its heads split and merged, LayerNorm, the MLP's products,
GELU, dropout, residual adds, the decoder's products, the softmax cross-entropy and its gradient,
the embedding, the clip, the update, and the rest. The step's arithmetic against the machine's
matmul rate is printed as in train_speed.py. --sweep runs (config, 1 thread) and (config, 2 threads),
each in a process of its own (the BLAS reads its thread count when it loads), prints one table and,
with --json, writes every measurement with the machine, the command and the commit. dkp / torch
above 1: dkp is faster. PyTorch is never a dependency of dkp; without it, only dkp is timed.
"""
import argparse
import json
import statistics
import time

from timing import alternating_rounds, check_sweep, optional_torch, save_sweep, set_blas_threads, sweep_arguments, sweep_rows

PROMPT = 8   # tokens of the generation's prompt


# --- the same model in PyTorch -------------------------------------------------------------------
def torch_model(torch, model, attention="sdpa"):
    """dkp's TransformerLM `model` (float32, tied) as a torch.nn.Module with copies of its parameters.
    forward(idx (B, T), targets (B, T) or None) -> logits (B, T, V), or (logits, mean loss)."""
    nn, F = torch.nn, torch.nn.functional
    H, nh, p = model.hidden_size, model.num_heads, model.dropout
    if not model.tie:
        raise ValueError("the PyTorch model is the tied one of transformer-small and transformer-tiny")
    t = lambda a: nn.Parameter(torch.from_numpy(a.copy()))  # noqa: E731

    def linear(lin):
        out = nn.Linear(lin.W.shape[1], lin.W.shape[0])
        out.weight, out.bias = t(lin.W.params["W"]), t(lin.b)
        return out

    def layernorm(ln):
        out = nn.LayerNorm(H, eps=ln.eps)
        out.weight, out.bias = t(ln.g), t(ln.b)
        return out

    class Block(nn.Module):
        def __init__(self, block):
            super().__init__()
            self.ln1, self.ln2 = layernorm(block.ln1), layernorm(block.ln2)
            self.qkv, self.attn_proj = linear(block.attn.qkv), linear(block.attn.proj)
            self.fc, self.mlp_proj = linear(block.fc), linear(block.proj)

        def attend(self, x):
            B, T, _ = x.shape
            q, k, v = (a.view(B, T, nh, H // nh).transpose(1, 2) for a in self.qkv(x).split(H, dim=2))
            drop = p if self.training else 0.0
            if attention == "sdpa":
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
            else:
                att = (q @ k.transpose(-2, -1)) * (1.0 / (H // nh) ** 0.5)
                att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
                y = F.dropout(F.softmax(att, dim=-1), drop, self.training) @ v
            return self.attn_proj(y.transpose(1, 2).reshape(B, T, H))

        def forward(self, x):
            x = x + F.dropout(self.attend(self.ln1(x)), p, self.training)
            h = self.mlp_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))
            return x + F.dropout(h, p, self.training)

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = t(model.embedding.params["W"]), t(model.pos)   # (V, H), (block_size, H)
            self.blocks = nn.ModuleList(Block(b) for b in model.blocks)
            self.ln_f, self.dec_b = layernorm(model.ln_f), t(model.dec_b)

        def forward(self, idx, targets=None):
            x = F.dropout(F.embedding(idx, self.wte) + self.wpe[:idx.shape[1]], p, self.training)
            for block in self.blocks:
                x = block(x)
            logits = F.linear(self.ln_f(x), self.wte, self.dec_b)          # tied: D = E
            if targets is None:
                return logits
            return logits, F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    return LM()


def torch_adamw(torch, lm, config):
    """AdamW as dkp's (dkp.core.optim.AdamW): decay on every parameter of two or more dimensions."""
    params = list(lm.parameters())
    groups = [{"params": [q for q in params if q.dim() >= 2], "weight_decay": config.weight_decay},
              {"params": [q for q in params if q.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.999), eps=1e-8)


# --- training ------------------------------------------------------------------------------------
def tokens(config, steps):
    """The train split's tokens that make exactly `steps` windows of (bptt, batch)."""
    return steps * config.batch * config.bptt + config.batch


def trainer(config, steps, corpus):
    from dkp.training.loop import Trainer
    return Trainer(config.with_(train_tokens=tokens(config, steps)), corpus=corpus, progress=False)


def dkp_speed(config, steps, corpus, warmup=2, phases=None):
    """Words/s of the real training loop (Trainer.train_epoch) over exactly `steps` windows. `phases`
    (a dict) receives the share of the epoch's time in each part of `PhaseTimer.install`."""
    trainer(config, warmup, corpus).train_epoch()
    tr = trainer(config, steps, corpus)
    timer = PhaseTimer().install(tr) if phases is not None else None
    t = time.perf_counter()
    try:
        _, wps, _, _ = tr.train_epoch()
    finally:
        if timer is not None:
            timer.uninstall()
    if timer is not None:
        total = time.perf_counter() - t
        phases.update({k: v / total for k, v in timer.seconds.items()})
        phases["rest"] = 1.0 - sum(timer.seconds.values()) / total
    return wps


def torch_speed(torch, config, steps, corpus, model, attention, warmup=2):
    """Words/s of the same step in PyTorch on the same windows, from a copy of dkp's `model`."""
    from dkp.core.data import batchify, bptt_windows
    from dkp.training.loop import learning_rate
    stream = batchify(corpus.train[:tokens(config, steps)], config.batch)
    windows = [(torch.from_numpy(x.T.copy()), torch.from_numpy(y.T.copy())) for x, y in bptt_windows(stream, config.bptt)]
    torch.manual_seed(0)
    lm = torch_model(torch, model, attention)
    lm.train()
    opt = torch_adamw(torch, lm, config)
    params = list(lm.parameters())

    def step(i, x, y):
        for group in opt.param_groups:                       # dkp's schedule: warm-up, then cosine
            group["lr"] = learning_rate(config, 0, i, steps)
        opt.zero_grad(set_to_none=True)
        _, loss = lm(x, y)
        float(loss.detach())                                 # as dkp's trainer reads its loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.clip)
        opt.step()
    for i, (x, y) in enumerate(windows[:warmup]):
        step(i, x, y)
    t = time.perf_counter()
    for i, (x, y) in enumerate(windows[:steps]):
        step(i, x, y)
    return steps * config.batch * config.bptt / (time.perf_counter() - t)


def first_losses(torch, config, corpus, model, attention):
    """(dkp's loss, PyTorch's) on the first training window without dropout, the same parameters."""
    from dkp.core.data import batchify, bptt_windows
    x, y = next(bptt_windows(batchify(corpus.train[:tokens(config, 1)], config.batch), config.bptt))
    model.set_training(False)
    dkp_loss = model.forward(x, None, y).loss
    lm = torch_model(torch, model, attention).eval()
    with torch.no_grad():
        _, loss = lm(torch.from_numpy(x.T.copy()), torch.from_numpy(y.T.copy()))
    return dkp_loss, float(loss)


# --- where dkp's step spends its time ------------------------------------------------------------
from dkp.bench.records import TRANSFORMER_PHASES as PHASES  # noqa: E402


class PhaseTimer:
    """Each part's own wall time, {phase: seconds}: a call inside another timed call is taken out of
    the outer one's time. Methods are wrapped on the live objects and functions in the modules that
    call them, and `uninstall` puts every one back."""

    def __init__(self):
        self.seconds, self._stack, self._undo = {}, [], []

    def _timed(self, inner, phase):
        def timed(*args, **kwargs):
            self._stack.append(0.0)
            t = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - t
                inside = self._stack.pop()
                self.seconds[phase] = self.seconds.get(phase, 0.0) + elapsed - inside
                if self._stack:
                    self._stack[-1] += elapsed
        return timed

    def wrap(self, obj, name, phase):
        had = name in vars(obj)                               # a module's function, not a class's method
        inner = getattr(obj, name)
        setattr(obj, name, self._timed(inner, phase))
        self._undo.append((obj, name, inner) if had else (obj, name, None))

    def install(self, trainer):
        from dkp.core import attention, transformer
        from dkp.training import loop
        model = trainer.model
        both = ("forward", "backward")
        for block in model.blocks:
            for name in both:
                self.wrap(block, name, "residuals")          # what the block does around its parts
                self.wrap(block.attn, name, "attention heads")
                for part, phase in ((block.ln1, "LayerNorm"), (block.ln2, "LayerNorm"),
                                    (block.attn.qkv, "attention products"), (block.attn.proj, "attention products"),
                                    (block.fc, "MLP products"), (block.proj, "MLP products")):
                    self.wrap(part, name, phase)
        for name in both:
            self.wrap(model.ln_f, name, "LayerNorm")
            self.wrap(model.decoder, name, "decoder products")
        for module, name, phase in ((attention, "attend", "attention"), (attention, "attend_backward", "attention"),
                                    (transformer, "gelu", "GELU"), (transformer, "gelu_backward", "GELU"),
                                    (transformer, "dropout", "dropout"), (transformer, "dropout_backward", "dropout"),
                                    (transformer, "softmax_cross_entropy", "softmax"),
                                    (transformer, "logits_gradient", "softmax"),
                                    (transformer, "embed", "embedding"), (transformer, "embed_backward", "embedding"),
                                    (loop, "clip_global_norm", "clip")):
            self.wrap(module, name, phase)
        self.wrap(trainer.optimizer, "step", "update")
        return self

    def uninstall(self):
        for obj, name, inner in reversed(self._undo):
            if inner is None:
                delattr(obj, name)
            else:
                setattr(obj, name, inner)
        self._undo = []


def step_flops_per_word(config, vocab):
    """FLOPs of one training step per word, its products only (2 FLOPs a multiply-add, each product
    three times: forward, the input's gradient, the weight's): per block the (3H, H), (H, H), (4H, H)
    and (H, 4H) matrices and the attention's two (T, T) x d products per head (dkp computes the whole
    T x T square, masked), then the (V, H) softmax. LayerNorm, GELU, the softmax's exponentials and
    the update are left out."""
    H, T = config.hidden, config.bptt
    return 3 * 2 * (config.layers * (12 * H * H + 2 * T * H) + vocab * H)


# --- generation ----------------------------------------------------------------------------------
def generation_lengths(config, new):
    """(prompt, new tokens) at batch 1 that fit the model's block_size."""
    prompt = min(PROMPT, config.block_size // 4)
    return prompt, min(new, config.block_size - prompt)


def dkp_generation(model, prompt, n, cache=True):
    """Tokens/s of greedy generation of n tokens after `prompt` (ids), with the key/value cache or
    re-running the whole sequence every step."""
    import numpy as np
    model.set_training(False)
    seq = list(prompt)
    t = time.perf_counter()
    logits, _, state, _ = model.forward(np.asarray(seq)[:, None], None)
    for _ in range(n):
        seq.append(int(np.argmax(logits[-1, 0])))
        if cache:
            logits, _, state, _ = model.forward(np.asarray(seq[-1:])[:, None], state)
        else:
            logits = model.forward(np.asarray(seq)[:, None], None).logits
    return n / (time.perf_counter() - t)


def torch_generation(torch, lm, prompt, n):
    """Tokens/s of the same greedy generation in PyTorch, re-running the whole sequence every step."""
    lm.eval()
    idx = torch.tensor([list(map(int, prompt))], dtype=torch.long)          # (1, P)
    t = time.perf_counter()
    with torch.no_grad():
        logits = lm(idx)
        for _ in range(n):
            idx = torch.cat([idx, logits[:, -1].argmax(dim=-1, keepdim=True)], dim=1)
            logits = lm(idx)
    return n / (time.perf_counter() - t)


# --- the measurement -----------------------------------------------------------------------------
def measure(args, config):
    """The medians over args.rounds alternating rounds: {"dkp", "torch": words/s, "generation":
    {"dkp_cache", "dkp_full", "torch_full": tokens/s}, "rounds", "phases", "first_loss", ...}."""
    from train_speed import matmul_gflops

    from dkp.core.data import load_corpus
    from dkp.training.loop import build_model
    rate = matmul_gflops()
    corpus = load_corpus()
    V = len(corpus.vocab)
    shares = None
    if args.phases:   # an epoch of its own, so that the wrapping costs the timed ones nothing
        shares = {}
        dkp_speed(config, args.steps, corpus, phases=shares)
    torch = optional_torch(args.threads)
    model = build_model(config, V, seed=0)                   # dkp's initial model, which PyTorch's copies
    prompt, new = generation_lengths(config, args.gen_tokens)
    ids = corpus.train[:prompt]
    timers = {"dkp": lambda: dkp_speed(config, args.steps, corpus)}
    gen = {"dkp_cache": lambda: dkp_generation(model, ids, new), "dkp_full": lambda: dkp_generation(model, ids, new, False)}
    losses = None
    if torch is not None:
        timers["torch"] = lambda: torch_speed(torch, config, args.steps, corpus, model, args.torch_attention)
        lm = torch_model(torch, model, args.torch_attention)
        gen["torch_full"] = lambda: torch_generation(torch, lm, ids, new)
        losses = first_losses(torch, config, corpus, model, args.torch_attention)
    timers["generation"] = lambda: {f"gen_{k}": f() for k, f in gen.items()}
    rounds = alternating_rounds(args.rounds, timers)
    med = lambda k: statistics.median(r[k] for r in rounds) if k in rounds[0] else None  # noqa: E731
    return {"dkp": med("dkp"), "torch": med("torch"), "phases": shares,
            "generation": {k: med(f"gen_{k}") for k in ("dkp_cache", "dkp_full", "torch_full")},
            "generation_tokens": {"prompt": prompt, "new": new}, "rounds": rounds,
            "first_loss": None if losses is None else {"dkp": losses[0], "torch": losses[1]},
            "torch_version": None if torch is None else torch.__version__,
            "torch_threads": None if torch is None else torch.get_num_threads(),
            "torch_attention": None if torch is None else args.torch_attention,
            "flops_per_word": step_flops_per_word(config, V), "matmul_gflops": rate}


def report(config_name, config, m):
    """A single run's lines."""
    from dkp.bench.records import fmt_rate, fmt_ratio, matmul_limit, paired_ratio
    g, n = m["generation"], m["generation_tokens"]
    if m["first_loss"]:
        print(f"first window without dropout, the same parameters: loss dkp {m['first_loss']['dkp']:.6f}, "
              f"PyTorch {m['first_loss']['torch']:.6f}")
    if m["phases"]:
        print("dkp's step, each part's own share: " + ", ".join(f"{k} {m['phases'].get(k, 0.0):.1%}" for k in PHASES))
    print(f"generation at batch 1, {n['new']} tokens after {n['prompt']}, tokens/s: dkp with its cache "
          f"{fmt_rate(g['dkp_cache'])}, dkp re-running the sequence {fmt_rate(g['dkp_full'])}, PyTorch re-running "
          f"it {fmt_rate(g['torch_full'])}")
    if g["torch_full"]:
        print(f"generation: dkp cache / PyTorch re-run {g['dkp_cache'] / g['torch_full']:.2f}x, dkp re-run / "
              f"PyTorch re-run {g['dkp_full'] / g['torch_full']:.2f}x (dkp cache / dkp re-run "
              f"{g['dkp_cache'] / g['dkp_full']:.2f}x)")
    limit, share = matmul_limit(m)
    print(f"arithmetic: {m['flops_per_word'] / 1e6:.1f} MFLOP per word; float32 matmul {m['matmul_gflops']:.0f} "
          f"GFLOP/s here -> at most {limit:,.0f} words/s; dkp reaches {share['dkp']:.0%} of it"
          + (f", torch {share['torch']:.0%}" if share["torch"] else ""))
    print(f"words/s: dkp {m['dkp']:,.0f}" + (f", torch {m['torch_version']} {m['torch']:,.0f} (threads: "
                                             f"{m['torch_threads']}, attention: {m['torch_attention']})"
                                             if m["torch"] else ""))
    if m["torch"]:
        print(f"dkp / torch: {fmt_ratio(paired_ratio(m))}  (median and range of the rounds' ratios)")


def sweep(args):
    """(config, 1 thread) and (config, 2 threads), each in a child process of its own; a table, and --json."""
    options = ["--steps", str(args.steps), "--rounds", str(args.rounds), "--gen-tokens", str(args.gen_tokens),
               "--torch-attention", args.torch_attention, "--phases"]
    rows = sweep_rows(__file__, options, sweep=[(args.config, 1), (args.config, 2)])
    from dkp.bench.records import transformer_speed_markdown
    save_sweep(args, "transformer_speed", rows, [transformer_speed_markdown], steps=args.steps, rounds=args.rounds)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="transformer-small", choices=["transformer-tiny", "transformer-small"])
    p.add_argument("--threads", type=int, default=0,
                   help="BLAS threads for dkp and intra-op threads for torch (default: the libraries' own)")
    p.add_argument("--steps", type=int, default=20, help="timed training steps per round (default 20)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of dkp and torch; medians (default 3)")
    p.add_argument("--gen-tokens", type=int, default=100, help="new tokens of the generation (default 100)")
    p.add_argument("--torch-attention", default="sdpa", choices=["sdpa", "explicit"],
                   help="PyTorch's attention: scaled_dot_product_attention (default) or written out")
    p.add_argument("--phases", action="store_true", help="also print the share of dkp's step in each of its parts")
    sweep_arguments(p, "the config with 1 and with 2 threads, one table")
    args = p.parse_args()
    if args.rounds < 1 or args.steps < 1 or args.gen_tokens < 1:
        p.error(f"--rounds, --steps and --gen-tokens must be >= 1, got {args.rounds}, {args.steps} and "
                f"{args.gen_tokens}")
    check_sweep(p, args)
    if args.sweep:
        return sweep(args)
    set_blas_threads(args.threads)                    # before NumPy loads OpenBLAS
    from dkp.training.configs import get_config
    config = get_config(args.config)
    print(f"config {args.config}: {config.layers} blocks x {config.hidden}, {config.heads} heads, batch "
          f"{config.batch}, context {config.bptt}, dropout {config.dropout:g}; {args.steps} steps x {args.rounds} "
          f"rounds, threads {args.threads or 'default'}")
    m = measure(args, config)
    report(args.config, config, m)
    if args.record == "-":
        print(json.dumps({"config": args.config, "threads": args.threads, **m}))


if __name__ == "__main__":
    main()
