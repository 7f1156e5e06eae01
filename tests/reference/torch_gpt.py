"""The reference GPT in PyTorch (1.13, CPU): the spec that Trident's C++ model is tested against.

It follows models/include/trident/models/gpt_config.hpp exactly:
  parameter names  wte.weight (V,C), wpe.weight (block_size,C), blocks.{i}.ln1.{weight,bias},
                   blocks.{i}.attn.qkv.{weight (3C,C), bias}, blocks.{i}.attn.proj.{weight,bias},
                   blocks.{i}.ln2.*, blocks.{i}.mlp.fc.{weight (4C,C), bias},
                   blocks.{i}.mlp.proj.{weight (C,4C), bias}, ln_f.{weight,bias}
  Linear weights   (out, in), y = x W^T + b, as torch.nn.Linear
  blocks           pre-LN: x = x + attn(ln1(x)); x = x + mlp(ln2(x)); LayerNorm eps 1e-5
  attention        qkv columns are q | k | v blocks of C; head h is columns h*hs..(h+1)*hs of
                   each block; causal, scale 1/sqrt(hs). Written out explicitly (torch 1.13 has
                   no scaled_dot_product_attention).
  MLP              GELU in its tanh form
  head             tied: logits = ln_f(x) wte^T; loss = mean cross entropy over all B*T positions
No dropout anywhere (the reference is deterministic).

Imported by tests/reference/make_gpt_fixtures.py and bench/cpu_train_torch.py.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    vocab_size: int = 67
    block_size: int = 16
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 32
    ln_eps: float = 1e-5


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        mask = torch.tril(torch.ones(cfg.block_size, cfg.block_size, dtype=torch.bool))
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x):
        B, T, C = x.shape
        hs = C // self.n_head
        q, k, v = self.qkv(x).split(C, dim=2)  # each (B,T,C); head h = columns h*hs..(h+1)*hs
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B,NH,T,hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B,NH,T,T)
        att = att.masked_fill(~self.mask[:T, :T], float("-inf"))
        att = F.softmax(att, dim=-1)
        y = att @ v  # (B,NH,T,hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd, eps=cfg.ln_eps)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.n_embd, eps=cfg.ln_eps)
        self.mlp = MLP(cfg)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        x = x + self.mlp(self.ln2(x))
        return x


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd, eps=cfg.ln_eps)

    def forward(self, idx, targets=None):
        """idx (B,T) int64 -> logits (B,T,V) and, with targets, the mean cross entropy."""
        B, T = idx.shape
        assert T <= self.cfg.block_size, f"sequence length {T} > block size {self.cfg.block_size}"
        pos = torch.arange(T, dtype=torch.long, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        logits = x @ self.wte.weight.t()  # tied head
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss


def init_gpt_(model: GPT, std: float = 0.02, aux_std: float = 0.1) -> None:
    """Weights ~ N(0, std); LayerNorm weights 1 + N(0, aux_std), LayerNorm and Linear biases
    N(0, aux_std), so that a bug in any of their gradients shows. Uses the global torch RNG,
    in the order of model.named_parameters()."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.normal_(0.0, aux_std)
            elif ".ln" in name or name.startswith("ln_f"):
                p.normal_(1.0, aux_std)
            else:
                p.normal_(0.0, std)


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def warmup_cosine_lr(step: int, total: int, warmup: int, max_lr: float, min_lr: float) -> float:
    """Linear warmup over `warmup` steps (step 0 gets max_lr/warmup), then cosine from max_lr
    down to min_lr at step `total` (never reached: steps are 0..total-1)."""
    if step < warmup:
        return max_lr * (step + 1) / warmup
    ratio = (step - warmup) / (total - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (max_lr - min_lr)
