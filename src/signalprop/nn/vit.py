"""A small Vision Transformer (Dosovitskiy et al. 2021, arXiv 2010.11929) for 28x28 images.

Patches of ``patch x patch`` pixels are embedded by a conv with kernel = stride = ``patch``,
a learnt class token and position embedding are added, then ``depth`` pre-norm
``nn.TransformerEncoderLayer`` blocks (``x + MHA(LN(x))``, ``x + MLP(LN(x))``), a final
LayerNorm and a linear head on the class token.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from signalprop.errors import ConfigError


class SmallViT(nn.Module):
    """ViT: conv patch embedding, ``depth`` encoder blocks of width ``dim``, linear head."""

    def __init__(self, image_size: int = 28, patch: int = 7, in_channels: int = 1,
                 num_classes: int = 10, dim: int = 64, depth: int = 2, heads: int = 4,
                 mlp_dim: int = 128, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        if image_size % patch or dim % heads:
            raise ConfigError(f"SmallViT needs patch to divide image_size and heads to divide "
                              f"dim, got image_size={image_size}, patch={patch}, dim={dim}, "
                              f"heads={heads}")
        factory = {"device": device, "dtype": dtype}
        self.image_size, self.patch, self.dim, self.depth = image_size, patch, dim, depth
        self.heads, self.mlp_dim = heads, mlp_dim
        tokens = (image_size // patch) ** 2 + 1
        self.patch_embed = nn.Conv2d(in_channels, dim, patch, patch, **factory)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim, **factory))
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, tokens, dim, **factory))
        layer = nn.TransformerEncoderLayer(dim, heads, mlp_dim, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True, **factory)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim, **factory)
        self.head = nn.Linear(dim, num_classes, **factory)

    def extra_repr(self) -> str:
        return (f"image_size={self.image_size}, patch={self.patch}, dim={self.dim}, "
                f"depth={self.depth}, heads={self.heads}, mlp_dim={self.mlp_dim}")

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1) + self.pos_embed
        return self.head(self.norm(self.encoder(tokens))[:, 0])
